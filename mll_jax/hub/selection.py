"""From a task's class names to a CHCO selection (shared/design/mll.md, sections 3-4): map the
names to concepts, gather candidate heads from the stored model labels, report coverage, solve.

No model runs here: everything comes from the labels computed at registration.
"""

import dataclasses

import numpy as np

from mll_jax.hub import chco, labeling, sdag, task_mapping

WEAK_F1 = 0.5  # a class whose best head has a lower F1 is reported as weakly covered


@dataclasses.dataclass(frozen=True)
class ClassCoverage:
  """One target class: its mapping, its pool size, its best head and the verdict."""
  name: str
  node: str | None
  how: str
  pool_images: int
  best_head: str          # "model@v:class" or ""
  best_f1: float
  status: str             # "covered", "weak" or "uncovered"
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class Selection:
  """The reuse recipe: for each selected head `(model ref, class index)`, its weights over the
  covered target classes; `classes` lists every target class, `covered[k]` whether class k
  can be predicted at all (uncovered ones never are)."""
  classes: tuple[str, ...]
  covered: tuple[bool, ...]
  heads: tuple[tuple[str, int], ...]
  weights: np.ndarray      # [heads, covered classes]
  bias: np.ndarray         # [covered classes]
  models: tuple[str, ...]  # selected model refs, in head order of first appearance
  flops_per_image: float   # the selected ensemble's cost
  objective: float
  coverage: tuple[ClassCoverage, ...]
  method: str = "chco"
  iterations: int = 0      # CHCO's FISTA steps (0 for top-k)
  converged: bool = True   # whether CHCO's solve reached its tolerance


@dataclasses.dataclass(frozen=True)
class TaskProblem:
  """A task ready for CHCO: the problem over candidate `heads` (`(model ref, class index)`),
  which target classes are `covered`, the `coverage` report, and per covered class its
  candidate head indices by decreasing F1 (`ranked`, for the top-k baseline)."""
  problem: chco.Problem | None
  heads: list
  covered: list
  coverage: list
  ranked: list


class EmptyHub(ValueError):
  """No labelled models to select from."""


def _head_f1(responses: np.ndarray, member_sets: list[np.ndarray]) -> np.ndarray:
  """F1 [K, C] of "argmax is head c" as a detector of target k among the target pools' images."""
  universe = np.concatenate(member_sets)
  predicted = responses[universe].argmax(-1)
  heads = responses.shape[1]
  predicted_count = np.bincount(predicted, minlength=heads).astype(np.float64)
  f1, start = [], 0
  for members in member_sets:
    hits = np.bincount(predicted[start:start + len(members)], minlength=heads).astype(float)
    start += len(members)
    precision = np.divide(hits, predicted_count, out=np.zeros(heads), where=predicted_count > 0)
    recall = hits / max(len(members), 1)
    f1.append(np.divide(2 * precision * recall, precision + recall, out=np.zeros(heads),
                        where=precision + recall > 0))
  return np.stack(f1)


def task_problem(names, graph: sdag.SDAG, pools: labeling.Pools, models: dict,
                 candidates_per_class: int = 8) -> TaskProblem:
  """The TaskProblem of the target classes `names`.

  `models` maps a model ref to `{"responses": [pool images, C], "flops": float,
  "classes": [...]}`. Candidates: per covered class, the `candidates_per_class` heads with the
  highest F1 (> 0) against the other target classes."""
  if not models:
    raise EmptyHub("The hub has no labelled models to select from; register and label "
                   "experts first (`python -m mll_jax.hub register ...`).")
  mappings = task_mapping.map_classes(names, graph)
  in_pools = [m.node is not None and m.node in pools.node_ids for m in mappings]
  member_sets = [pools.pool(m.node) for m, ok in zip(mappings, in_pools) if ok]
  refs = list(models)
  f1 = {ref: _head_f1(models[ref]["responses"], member_sets) for ref in refs} \
      if member_sets else {}
  coverage, heads, covered, row, ranked_keys = [], {}, [], 0, []
  for mapping, ok in zip(mappings, in_pools):
    if not ok:
      reason = ("no concept matches this name" if mapping.node is None else
                "its concept has no pool images in this hub")
      coverage.append(ClassCoverage(mapping.name, mapping.node, mapping.how, 0, "", 0.0,
                                    "uncovered", reason))
      covered.append(False)
      continue
    scored = sorted(((f1[ref][row, c], ref, c) for ref in refs
                     for c in range(f1[ref].shape[1])), key=lambda t: -t[0])
    best = [(s, ref, c) for s, ref, c in scored[:candidates_per_class] if s > 0]
    pool_size = len(member_sets[row])
    row += 1
    if not best:
      coverage.append(ClassCoverage(mapping.name, mapping.node, mapping.how, pool_size, "", 0.0,
                                    "uncovered", "no head of any model responds to it"))
      covered.append(False)
      continue
    top_f1, top_ref, top_c = best[0]
    status = "covered" if top_f1 >= WEAK_F1 else "weak"
    coverage.append(ClassCoverage(
        mapping.name, mapping.node, mapping.how, pool_size,
        f"{top_ref}:{models[top_ref]['classes'][top_c]}", float(top_f1), status,
        "" if status == "covered" else f"best head F1 {top_f1:.2f} < {WEAK_F1}"))
    covered.append(True)
    ranked_keys.append([(ref, c) for _, ref, c in best])
    for _, ref, c in best:
      heads.setdefault((ref, c), None)
  heads = list(heads)
  if not heads:
    return TaskProblem(None, [], covered, coverage, [])
  covered_sets = [s for s, c in zip(member_sets, [c for c, ok in zip(covered, in_pools) if ok])
                  if c]
  universe = np.concatenate(covered_sets)
  y = np.concatenate([np.full(len(s), k) for k, s in enumerate(covered_sets)]).astype(np.int32)
  chosen = sorted({ref for ref, _ in heads}, key=refs.index)
  x = np.stack([models[ref]["responses"][universe, c] for ref, c in heads], axis=1)
  flops = np.array([models[ref]["flops"] for ref in chosen], np.float32)
  kappa = flops / flops.mean()  # relative costs: lambda's scale does not depend on units
  groups = np.array([chosen.index(ref) for ref, _ in heads], np.int32)
  problem = chco.Problem(x.astype(np.float32), y, groups, kappa, len(covered_sets))
  ranked = [[heads.index(key) for key in keys] for keys in ranked_keys]
  return TaskProblem(problem, heads, covered, coverage, ranked)


def from_solution(names, task: TaskProblem, solution: dict, models: dict,
                  method: str = "chco") -> Selection:
  """The Selection of the heads with non-zero weights."""
  keep = np.flatnonzero(np.abs(solution["w"]).sum(1) > 0)
  kept_heads = tuple(task.heads[i] for i in keep)
  refs = tuple(dict.fromkeys(ref for ref, _ in kept_heads))
  return Selection(tuple(names), tuple(task.covered), kept_heads, solution["w"][keep],
                   solution["b"], refs, float(sum(models[r]["flops"] for r in refs)),
                   float(solution["objective"]), tuple(task.coverage), method,
                   int(solution.get("iterations", 0)), bool(solution.get("converged", True)))


def hub_models(hub) -> dict:
  """Every labelled entry of `hub` as `task_problem` wants it (labels are read, not computed)."""
  models = {}
  for entry in hub.entries():
    label = hub.load_label(entry.ref)
    if label is not None:
      models[entry.ref] = {"responses": label["responses"], "flops": entry.flops_per_image,
                           "classes": entry.classes}
  return models


def topk_solution(task: TaskProblem, k: int = 3) -> dict:
  """The `topk` baseline: each class keeps its k best candidate heads by F1, each with weight 1
  into that class; reuse weighs them by the inverse entropy of their model's prediction."""
  w = np.zeros((len(task.heads), task.problem.num_classes), np.float32)
  for cls, ranked in enumerate(task.ranked):
    w[ranked[:k], cls] = 1.0
  return {"w": w, "b": np.zeros(task.problem.num_classes, np.float32),
          "objective": float("nan")}


def select(hub, names, graph: sdag.SDAG | None = None, lam: float = 1e-2, mu: float = 1e-4,
           max_steps: int = chco.MAX_STEPS, budget: int | None = None, method: str = "chco",
           candidates_per_class: int = 8, topk: int = 3, models: dict | None = None) -> Selection:
  """Selects and weighs expert heads of `hub` for the target classes `names` (no target
  images). `method="topk"` is the inverse-entropy baseline. Uncovered classes are reported in
  `Selection.coverage`; a task none of whose classes is covered raises EmptyHub."""
  from mll_jax.hub import concept_graph
  graph = graph or concept_graph.default_graph()
  models = hub_models(hub) if models is None else models
  task = task_problem(names, graph, hub.load_pools(), models, candidates_per_class)
  if task.problem is None:
    raise EmptyHub("No target class is covered by the hub: " + "; ".join(
        f"{c.name}: {c.reason}" for c in task.coverage))
  if method == "chco":
    solution = chco.solve(task.problem, lam=lam, mu=mu, max_steps=max_steps, budget=budget)
  elif method == "topk":
    solution = topk_solution(task, topk)
  else:
    raise ValueError(f"Unknown selection method {method!r}; use 'chco' or 'topk'.")
  return from_solution(names, task, solution, models, method)


def lam_keeping_a_model(hub, names, lam: float, tries: int = 6, **select_args) -> float | None:
  """When CHCO keeps no model at `lam` (the cost penalty outweighs every head's gain): the
  largest of lam/10, lam/100, ... (`tries` of them) at which it keeps one, or None."""
  models = hub_models(hub)
  for k in range(1, tries + 1):
    trial = lam * 10.0 ** -k
    if select(hub, names, lam=trial, models=models, **select_args).models:
      return trial
  return None
