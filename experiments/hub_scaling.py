"""Hub-scaling study: zero-shot accuracy of CHCO reuse on held-out tasks against hub size, the
baselines at the full hub, and accuracy against cost over CHCO's lambda.

    python -m experiments.build_hub --mnist_dir=DIR                 # first: the hub
    python -m experiments.hub_scaling --mnist_dir=DIR [--hub_dir=runs/hub]
    python -m experiments.hub_scaling --quick --hub_dir=...         # tests: a smoke run

Tasks: random class subsets (3-8 classes) of animal_mnist and of MNIST that no single expert
covers, drawn with a seed; each is given only by class names. Zero-shot accuracy is measured on
the test images of the task's classes through the fused reuse graph. Baselines (full hub):
  topk        the inverse-entropy top-k heads per class (MLL's VLM variant)
  random      as many models as CHCO picked, drawn at random among those with candidate heads,
              weights fitted by CHCO without the cost penalty
  single      the one model whose heads fit the task's pool images best (no test images used)
  generalist  one model trained on all classes of the data set, its logits restricted to the task
  oracle      an expert trained on the task's own classes (the upper reference)
  knn_pixels  1-NN on raw pixels on the oracle's training images (the reference baseline; like
              the oracle it sees the task's labels, which the zero-shot methods never do)
The generalists and oracles train as the hub's experts do (experiments/hub_experts.py: the
fine-tuning recipe's budget, a validation holdout and its curve). Writes
`<out>/hub_scaling.{md,csv,png,json}`, with per data set CHCO's gap to the oracle and to the
generalist.
"""

import json
import pathlib
import sys

import numpy as np
from absl import app, flags
from tqdm import tqdm

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import hub_build_report, hub_experts, study_cli  # noqa: E402
from experiments import hub_scaling_report as report  # noqa: E402
from mll_jax import train  # noqa: E402
from mll_jax.hub import (concept_graph, functional, registry, reuse,  # noqa: E402
                         run_import, selection, task_data)

_HUB_DIR = flags.DEFINE_string("hub_dir", "runs/hub", "The hub built by build_hub.py.")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", None, "Folder of MNIST's IDX files.")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_QUICK = flags.DEFINE_bool("quick", False, "Two tasks, two sizes, one ordering, no training.")
_TASKS = flags.DEFINE_integer("tasks", 5, "Held-out tasks per data set.")
_ORDERINGS = flags.DEFINE_integer("orderings", 3, "Random hub orderings per size.")
_SIZES = flags.DEFINE_list("sizes", ["2", "4", "7", "14"], "Hub sizes.")
_LAMBDAS = flags.DEFINE_list("lambdas", ["0", "0.003", "0.01", "0.03", "0.1", "0.3"],
                             "CHCO lambdas of the accuracy-vs-cost curve.")
_LAM = flags.DEFINE_float("lam", 0.01, "CHCO's lambda for the scaling curve and baselines.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of tasks and orderings.")
_COMPARE_TO = flags.DEFINE_string(
    "compare_to", None, "Another hub's hub_scaling.json on the same tasks (e.g. the ViT-only "
    "hub's, for the mixed hub): the report adds this hub against it.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Write the report again from <out>/hub_scaling.json (the settings it "
    "was run with; --compare_to may be added), without evaluating anything.")
_MAX_IMAGES = flags.DEFINE_integer("max_test_images", 500,
                                   "Test images per task (a seeded random subset; 0: all).")
# Reuse batch on CPU: the fused graph of 14 `mini` experts ran 1,400 images at 107 images/s
# in batches of 512 and 177 in batches of 32 (2-core CPU).
EVAL_BATCH = 32

DATA = {"animal_mnist": ("animal_mnist", hub_experts.ANIMAL_EXPERTS),
        "mnist": ("idx/mnist", hub_experts.DIGIT_EXPERTS)}
CLASSES = {"animal_mnist": ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse",
                            "sheep", "zebra"],
           "mnist": [str(i) for i in range(10)]}


def held_out_tasks(datasets, per_data: int, seed: int) -> list[tuple[str, tuple[str, ...]]]:
  """`(data set, classes)` tasks of 3-8 classes that are not inside any expert's classes."""
  rng = np.random.default_rng(seed)
  tasks = []
  for data in datasets:
    experts = [set(c.split(",")) for c in DATA[data][1].values()]
    chosen = set()
    while len(chosen) < per_data:
      size = int(rng.integers(3, 9))
      classes = tuple(sorted(rng.choice(CLASSES[data], size, replace=False)))
      if not any(set(classes) <= e for e in experts):
        chosen.add(classes)
    tasks += [(data, c) for c in sorted(chosen)]
  return tasks


class Study:
  """Shared state: the hub, its labels, the tasks' test images and the fused evaluations."""

  def __init__(self, hub: registry.Hub, mnist_dir: str | None, max_images: int = 0):
    self.hub, self.mnist_dir, self.max_images = hub, mnist_dir, max_images
    self.models = selection.hub_models(hub)
    self.refs = sorted(self.models)
    self._images = {}

  def images(self, data, classes):
    if (data, classes) not in self._images:
      self._images[data, classes] = task_data.task_images(
          DATA[data][0], classes, manual_dir=self.mnist_dir,
          max_examples=self.max_images or None)
    return self._images[data, classes]

  def zero_shot(self, data, classes, refs=None, **select_args) -> dict:
    """Accuracy, models and MFLOPs/image of one selection (0 accuracy when nothing covers
    the task: every prediction is wrong)."""
    models = {r: self.models[r] for r in (refs or self.refs)}
    try:
      chosen = selection.select(self.hub, list(classes), models=models, **select_args)
    except selection.EmptyHub:
      return {"accuracy": 0.0, "models": 0, "mflops": 0.0}
    images, labels = self.images(data, classes)
    return {"accuracy": reuse.build(chosen, self.hub).evaluate(images, labels, EVAL_BATCH),
            "models": len(chosen.models), "mflops": chosen.flops_per_image / 1e6,
            "selected": chosen.models}

  def families(self, refs) -> dict:
    """`{"family/variant": count}` of the models `refs` (e.g. `vit/mini`, `cnn/resnet18`): the
    family alone would not tell a ResNet-18 from the small CNN, which differ 30x in cost."""
    counts = {}
    for ref in refs:
      model = self.hub.show(ref).architecture["model"]
      kind = f"{model.get('family', 'vit')}/{model['variant']}"
      counts[kind] = counts.get(kind, 0) + 1
    return counts

  def single_best(self, data, classes) -> dict:
    """The one model that covers the most target classes, ties broken by the best CHCO fit
    (no penalty) on the task's pool images: chosen without test images."""
    fits = {}
    for ref in self.candidates(classes):
      try:
        chosen = selection.select(self.hub, list(classes), models={ref: self.models[ref]},
                                  lam=0.0)
      except selection.EmptyHub:
        continue
      fits[ref] = (-sum(chosen.covered), chosen.objective)
    if not fits:
      return {"accuracy": 0.0, "models": 0, "mflops": 0.0}
    return self.zero_shot(data, classes, [min(fits, key=fits.get)], lam=0.0)

  def candidates(self, classes) -> list[str]:
    """Models with at least one candidate head for the task."""
    task = selection.task_problem(list(classes), concept_graph.default_graph(),
                                  self.hub.load_pools(), self.models)
    return sorted({ref for ref, _ in task.heads})


def trained_accuracy(workdir, data, classes, study: Study) -> float:
  """Accuracy of a trained run (the generalist over all the data set's classes, or an oracle
  over the task's own) on the task's test images, its argmax restricted to the task's classes."""
  import jax
  architecture, variables, names, _ = run_import.read_run(workdir)
  images, labels = study.images(data, classes)
  logits = np.asarray(jax.jit(functional.apply_fn(architecture))(variables, images))
  columns = [list(names).index(c) for c in classes]
  return float(np.mean(logits[:, columns].argmax(-1) == labels))


def run(settings: dict) -> dict:
  hub = registry.Hub(settings["hub_dir"], create=False)
  study = Study(hub, settings["mnist_dir"], settings["max_test_images"])
  datasets = ["animal_mnist"] + (["mnist"] if settings["mnist_dir"] else [])
  tasks = held_out_tasks(datasets, settings["tasks"], settings["seed"])
  rng = np.random.default_rng(settings["seed"])
  orderings = [list(rng.permutation(study.refs)) for _ in range(settings["orderings"])]
  results = {"tasks": [list(t) for t in tasks], "scaling": [], "baselines": [], "lambda": [],
             "trained": {}}
  grid = [(o, order, size, task, method) for o, order in enumerate(orderings)
          for size in settings["sizes"] for task in tasks for method in ("chco", "topk")]
  for o, order, size, (data, classes), method in tqdm(grid, desc="hub sizes", unit="eval"):
    out = study.zero_shot(data, classes, order[:size], lam=settings["lam"], method=method)
    results["scaling"].append({"ordering": o, "size": min(size, len(order)),
                               "method": method, "task": ",".join(classes), **out})
  runs_dir = pathlib.Path(f"{hub.directory}_runs")
  for data, classes in tqdm(tasks, desc="baselines and lambda", unit="task"):
    key = ",".join(classes)
    chco_out = study.zero_shot(data, classes, lam=settings["lam"])
    rows = {"chco": chco_out, "topk": study.zero_shot(data, classes, method="topk")}
    pool = study.candidates(classes) or study.refs
    picked = list(rng.choice(pool, max(1, chco_out["models"]), replace=False))
    rows["random"] = study.zero_shot(data, classes, picked, lam=0.0)
    rows["single"] = study.single_best(data, classes)
    if not settings["quick"]:
      mnist_dir = settings["mnist_dir"]
      generalist = hub_experts.train_expert(runs_dir, f"generalist_{data}", data,
                                            ",".join(CLASSES[data]), False, mnist_dir)
      rows["generalist"] = {"accuracy": trained_accuracy(generalist, data, classes, study),
                            "models": 1, "mflops": np.nan}
      oracle = hub_experts.train_expert(runs_dir, f"oracle_{data}_{key.replace(',', '-')}",
                                        data, key, False, mnist_dir)
      rows["oracle"] = {"accuracy": trained_accuracy(oracle, data, classes, study),
                        "models": 1, "mflops": np.nan}
      # The reference baseline on the oracle's split, scored on the same test images.
      images, labels = study.images(data, classes)
      rows["knn_pixels"] = {"accuracy": hub_build_report.pixel_knn(
          oracle, (images, np.asarray(classes)[labels])), "models": 0, "mflops": np.nan}
      for workdir, run_classes in ((generalist, CLASSES[data]), (oracle, classes)):
        results["trained"][workdir.name] = {"data": data, "classes": ",".join(run_classes),
                                            **hub_build_report.trained_run(workdir)}
    for method, out in rows.items():
      results["baselines"].append({"method": method, "task": key,
                                   **{k: v for k, v in out.items() if k != "selected"}})
    for lam in settings["lambdas"]:
      out = study.zero_shot(data, classes, lam=lam)
      # Which families CHCO keeps as the cost weighs more (a mixed hub, issue 14).
      out["families"] = study.families(out.pop("selected", ()))
      results["lambda"].append({"lam": lam, "task": key, **out})
  for row in results["scaling"]:
    row.pop("selected", None)
  return results


def main(argv):
  del argv
  train.setup_runtime()
  quick = _QUICK.value
  settings = {"hub_dir": pathlib.Path(_HUB_DIR.value).absolute(), "mnist_dir": _MNIST_DIR.value,
              "quick": quick, "tasks": 1 if quick else _TASKS.value,
              "orderings": 1 if quick else _ORDERINGS.value,
              "sizes": [1, 3] if quick else [int(s) for s in _SIZES.value],
              "lambdas": [0.0, 0.1] if quick else [float(x) for x in _LAMBDAS.value],
              "lam": _LAM.value, "seed": _SEED.value,
              "max_test_images": _MAX_IMAGES.value,
              "command": study_cli.command_line(sys.argv)}
  out = pathlib.Path(_OUT.value)
  stem = out / ("hub_scaling_quick" if quick else "hub_scaling")
  if _REPORT_ONLY.value:
    results = saved_results(stem.with_suffix(".json"))
    settings = results["settings"]
  check_comparable(_COMPARE_TO.value, settings)  # before an hour of evaluations, not after
  if not _REPORT_ONLY.value:
    results = run(settings)
    # The settings travel with the results, so that --report_only writes the same report.
    results["settings"] = {k: (str(v) if isinstance(v, pathlib.Path) else v)
                           for k, v in settings.items()}
    out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
  report.write(results, {**settings, "compare_to": _COMPARE_TO.value}, stem)


def check_comparable(compare_to: str | None, settings: dict) -> None:
  """SystemExit naming the problem unless `compare_to` (if given) is a hub_scaling.json of the
  tasks this study draws: another seed or task count would compare other images."""
  if not compare_to:
    return
  path = pathlib.Path(compare_to)
  if not path.is_file():
    raise SystemExit(f"--compare_to: {path} is not a file; give the hub_scaling.json of the "
                     "study to compare with (e.g. experiments/results/hub_scaling.json).")
  datasets = ["animal_mnist"] + (["mnist"] if settings["mnist_dir"] else [])
  tasks = [[d, list(c)] for d, c in held_out_tasks(datasets, settings["tasks"], settings["seed"])]
  theirs = json.loads(path.read_text()).get("tasks")
  if theirs != tasks:
    raise SystemExit(f"--compare_to: {path} was run on other tasks ({theirs}) than this study "
                     f"draws ({tasks}); compare studies of the same --seed, --tasks and data "
                     "sets.")


def saved_results(path: pathlib.Path) -> dict:
  """A study's saved results for --report_only; SystemExit naming what is missing."""
  if not path.exists():
    raise SystemExit(f"--report_only: {path} does not exist; run the study first (without "
                     "--report_only), or give the --out it wrote to.")
  results = json.loads(path.read_text())
  if "settings" not in results:
    raise SystemExit(f"--report_only: {path} was written before studies saved their settings; "
                     "rerun the study to write its report.")
  return results


if __name__ == "__main__":
  app.run(main)
