"""What a hub entry needs from a finished training run: its architecture, its variables (latest
checkpoint), its class names and their SDAG nodes."""

import json
import pathlib

import ml_collections
import orbax.checkpoint as ocp

from mll_jax import checkpoint
from mll_jax.data import class_subsets, sources
from mll_jax.hub import concept_graph, functional, sdag
from mll_jax.storage import locations


class RunImportError(ValueError):
  """The workdir is not a finished classifier run."""


def run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The run's config as saved at its start (`config.json`)."""
  path = locations.location(workdir) / "config.json"
  if not path.exists():
    raise RunImportError(f"{workdir} is not a training workdir (no config.json); give the "
                         "folder `python -m mll_jax.train` wrote.")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The classes the run's model outputs, in output order (its class subset, if any)."""
  builder = sources.get_builder(config.data.name, config.data.get("data_dir") or None,
                                config.data.get("manual_dir") or None)
  info = sources.info(builder)
  indices = class_subsets.resolve(config.get("classes", ""), info.class_names)
  return class_subsets.restrict_info(info, indices).class_names


def class_nodes(dataset: str, names, graph: sdag.SDAG | None = None) -> tuple[str, ...]:
  """SDAG node of each class: the shipped map for known data sets, else name lookup; "" where
  neither finds one (the entry is still registered; labelling reports it uncovered)."""
  graph = graph or concept_graph.default_graph()
  try:
    known = concept_graph.class_nodes(dataset)
  except KeyError:
    known = {}
  return tuple(known.get(n) or next(iter(graph.lookup(n)), "") for n in names)


def read_run(workdir: str | pathlib.Path):
  """`(architecture, variables, classes, config)` of the run's latest checkpoint."""
  config = run_config(workdir)
  if config.task not in ("supervised", "expert", "distill"):
    raise RunImportError(f"{workdir} is a {config.task!r} run; hub entries are classifiers "
                         "(supervised, expert or distill runs).")
  names = class_names(config)
  architecture = functional.architecture_from_config(config, len(names))
  abstract = functional.abstract_variables(architecture)
  step = checkpoint.step_dir(workdir, "The run")
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
  variables = ocp.PyTreeCheckpointer().restore(step / "state", args=ocp.args.PyTreeRestore(
      item=abstract, restore_args=restore_args, partial_restore=True))
  return architecture, variables, names, config
