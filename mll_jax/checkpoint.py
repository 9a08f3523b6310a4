"""Orbax checkpoints: train state + data iterator position + config JSON, and resume order.

Restores always go into an abstract state that carries the *current* shardings, so a checkpoint
written on 8 devices restores on 1 and the reverse. A checkpoint that cannot be read (corrupted,
truncated) is moved aside to `workdir/unreadable_checkpoints/` -- never deleted -- and the next
older one is tried, with a message saying so.

The workdir may be a bucket (gs://, s3://; `storage.locations`): orbax writes there directly,
committing each checkpoint with a commit file instead of a rename.
"""

import dataclasses
import errno
import logging
import os
import re
import shutil

import grain
from etils import epath
import jax
import orbax.checkpoint as ocp

from mll_jax import sharding
from mll_jax.models import layer_plan
from mll_jax.storage import locations, objects, orbax_s3

log = logging.getLogger(__name__)
orbax_s3.enable()  # affects s3:// paths only; orbax 0.12 has no s3 support of its own


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was asked for; the message says what to do."""


class DiskFull(CheckpointError):
  """A checkpoint did not fit on its disk; the message says how much it needs and where."""


def _is_disk_full(error: BaseException) -> bool:
  """ENOSPC anywhere in the exception's chain (orbax re-raises it as RESOURCE_EXHAUSTED)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    text = str(error)
    if "RESOURCE_EXHAUSTED" in text or "No space left on device" in text:
      return True
    error = error.__cause__ or error.__context__
  return False


def _state_bytes(state) -> int:
  return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(state))


class Checkpointer:
  """Periodic, asynchronous saves of `{"state", "data", "config"}` under `workdir/checkpoints`."""

  def __init__(self, workdir: str | os.PathLike, every_steps: int, keep: int = 3,
               keep_every: int = 0):
    self.workdir = locations.location(workdir)
    self.directory = self.workdir / "checkpoints"
    self.every_steps = every_steps
    self._saving = (None, 0)  # (step, bytes) of the latest save started, for DiskFull
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_every or None, create=True,
        enable_async_checkpointing=True,
        temporary_path_class=orbax_s3.temporary_path_class(self.directory))
    self.manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        self.directory, options=self._options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler(),
                       "config": ocp.JsonCheckpointHandler()})

  def should_save(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def save(self, step: int, state, data_iterator, config_json: dict) -> None:
    """Starts an asynchronous save (the arrays are copied off the device before it returns).

    Raises DiskFull, before writing, when the disk has less room than the state needs, and
    when a write fails for want of space (the partial checkpoint is removed; older ones stay).
    """
    # A failed earlier save (asynchronous, so its error waits for the next call) is reported
    # as itself, before this one is judged against the space it left.
    self.wait()
    needed = _state_bytes(state)
    if not locations.is_remote(self.workdir):  # a bucket has no free space to compare with
      free = shutil.disk_usage(self.directory if self.directory.exists() else self.workdir).free
      if free < needed:
        raise self._disk_full(step, needed, free)
    self._saving = (step, needed)
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=grain.checkpoint.CheckpointSave(data_iterator),
          config=ocp.args.JsonSave(config_json)), force=True)
    except Exception as e:
      self._raise_if_disk_full(e)
      raise

  def wait(self) -> None:
    """Blocks until every started save is on disk (DiskFull if one ran out of space)."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      self._raise_if_disk_full(e)
      raise

  def _raise_if_disk_full(self, error: Exception) -> None:
    if not _is_disk_full(error) or locations.is_remote(self.workdir):
      return
    self._settle()
    self._remove_partials()
    step, needed = self._saving
    raise self._disk_full(step, needed, shutil.disk_usage(self.directory).free) from None

  def _settle(self) -> None:
    """Lets the saves under way finish (or fail) before judging what is on disk."""
    try:
      self.manager.wait_until_finished()
    except Exception:  # noqa: BLE001 - the disk-full error is what gets reported
      pass

  def _disk_full(self, step, needed: int, free: int) -> DiskFull:
    self._settle()
    mib = lambda b: f"{b / 2**20:,.1f} MiB"
    kept = self.manager.all_steps()
    return DiskFull(
        f"The disk is full: the checkpoint of step {step} needs about {mib(needed)} in "
        f"{self.directory}, which has {mib(free)} free. "
        + (f"The last good checkpoint (step {max(kept)}) is kept; free space there and rerun "
           "the same command to resume from it." if kept else
           "No checkpoint was written; free space there (or choose another --workdir) and "
           "rerun."))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, abstract_state, data_iterator):
    """`(step, state)` from the newest readable checkpoint, or None when there is none.

    `data_iterator` is restored in place. Unreadable checkpoints are moved aside and named.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        stored = self.manager.item_metadata(step)["state"]["params"]
      except Exception as e:  # Metadata that cannot be read: a damaged checkpoint.
        self._set_aside(step, e)
        continue
      # A readable checkpoint of another architecture is the user's config change, not damage:
      # stop and say so rather than set the run aside.
      _check_same_structure(stored, abstract_state["params"],
                            f"The checkpoint at step {step} in {self.directory}",
                            "Resume with the config that wrote it, or use another --workdir.")
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      # grain writes one iterator file per process (`process_I-of-N.json`); a checkpoint of
      # another process count has none for this layout, and is positioned from the step.
      layout = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
      same_layout = (self.directory / str(step) / "data" / layout).exists()
      if same_layout:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
      except Exception as e:  # Orbax raises many types for damaged files; all mean "unreadable".
        self._set_aside(step, e)
        continue
      if not same_layout:
        position_at_step(data_iterator, step)
        if jax.process_index() == 0:
          print(f"Restored step {step} written by another number of processes; the data "
                "stream continues at the same global batch.", flush=True)
      return step, restored["state"]
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    if jax.process_count() > 1:  # every process would move the same folder
      raise CheckpointError(
          f"Checkpoint at step {step} in {self.directory} cannot be read "
          f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). In a multi-process "
          "run it is not moved aside automatically: move it out of checkpoints/ and relaunch.")
    aside = self.workdir / "unreadable_checkpoints" / str(step)
    if not locations.is_remote(aside):
      aside.parent.mkdir(parents=True, exist_ok=True)
    older = [s for s in self.manager.all_steps() if s < step]
    message = (f"Checkpoint at step {step} in {self.directory} cannot be read "
               f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); moved it to "
               f"{aside} and " + (f"falling back to step {max(older)}." if older
                                  else "no older checkpoint exists (the run starts from scratch)."))
    log.warning(message)
    print(f"WARNING: {message}", flush=True)
    objects.move_tree(self.directory / str(step), aside)
    self.manager.close()
    self.manager = self._open()

  def _remove_partials(self) -> None:
    """orbax writes into `<step>.orbax-checkpoint-tmp*` and renames when complete: what is left
    of a failed save goes; every finished checkpoint stays (local disk only: a bucket's
    checkpoints commit by a file, and an uncommitted one is never read)."""
    if locations.is_remote(self.directory):
      return
    for partial in self.directory.glob("*.orbax-checkpoint-tmp*"):
      shutil.rmtree(partial, ignore_errors=True)

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()
      # Again once orbax's threads are done: a failed save's writes can still be in flight
      # when orbax reports the failure, and recreate the folder removed then.
      self._remove_partials()


def position_at_step(data_iterator, step: int) -> None:
  """Moves a training-stream iterator to the batch after `step` steps.

  Valid because the stream is a grain MapDataset with one batch per step whose global order
  does not depend on the process count (`data/pipeline.py`): its position is the step.
  """
  state = data_iterator.get_state()
  if "next_index" not in state:
    raise CheckpointError(f"The data iterator's state {sorted(state)} has no position to set; "
                          "resume with the process count that wrote the checkpoint.")
  data_iterator.set_state({**state, "next_index": step})


def step_dir(path: str | os.PathLike, what: str = "The path") -> epath.Path:
  """One step's checkpoint folder from a training workdir, its `checkpoints/` folder (the
  latest step) or a step folder itself, on local disk or in a bucket."""
  # Absolute: orbax reads a relative path's metadata as missing (and returns None).
  path = locations.location(path)
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  if not (path / "state").is_dir():
    steps = sorted((int(p.name) for p in path.glob("*") if p.name.isdigit()), reverse=True) \
        if path.is_dir() else []
    if not steps:
      raise CheckpointError(f"{what}={str(path)!r} holds no checkpoint; give a training "
                            "workdir, its checkpoints/ folder, or one step's folder.")
    path = path / str(steps[0])
  return path


def plan_init(path: str | os.PathLike, abstract_variables, fresh: tuple[str, ...] = (),
              into: str = "") -> "InitPlan":
  """Checks, reading only metadata, what `restore_init` will load: params (and model state)
  from `path` (a training workdir, its `checkpoints/` folder or
  one step's folder). Used for `config.init_from`.

  `abstract_variables` is `{"params": ..., ["model_state": ...]}` of the model. Every model
  parameter must be in the checkpoint with the same shape, except those matching a `fresh`
  regex (e.g. a new classifier head, `"^head/"`), which keep their initial values; checkpoint
  params the model lacks (an MAE's decoder) are ignored. Model state (BatchNorm statistics)
  the checkpoint has is restored; state the model lacks is an error, since dropping a learned
  normalisation would change the function (a linear probe loaded without its BatchNorm).
  `into` names a top-level key of the model (e.g. a distillation model's `teacher`) that the
  checkpoint fills. Mismatches raise CheckpointError listing them.

  A checkpoint whose transformer blocks are in the other layout (scanned `blocks/...` stacked
  on a layer axis, or `blocks/0/...`; `config.model.scan_layers`) is read in its own layout
  and converted by `restore_init`.
  """
  path = step_dir(path, "config.init_from")
  fresh_patterns = [re.compile(p) for p in fresh]
  full_name = (lambda name: f"{into}/{name}") if into else (lambda name: name)
  wanted = lambda name: not any(p.search(full_name(name)) for p in fresh_patterns)
  if into:
    if into not in abstract_variables["params"]:
      raise CheckpointError(f"init into {into!r}: not a part of the model's params (it has "
                            f"{', '.join(map(str, abstract_variables['params']))}).")
  pick = lambda tree: (tree.get(into, {}) if into else tree) or {}
  checkpointer = ocp.PyTreeCheckpointer()
  stored_tree = checkpointer.metadata(path / "state").item_metadata.tree
  where = f"config.init_from={str(path)!r}"
  target = {"params": _subtree(pick(abstract_variables["params"]), wanted)}
  stored_scanned = layer_plan.has_stacked_blocks(_shapes_by_path(stored_tree["params"]))
  model_scanned = layer_plan.has_stacked_blocks(_shapes_by_path(target["params"]))
  convert = ""
  if model_scanned != stored_scanned:  # read in the checkpoint's layout, convert afterwards
    convert = "stack" if model_scanned else "unstack"
    to_stored = layer_plan.unstack_blocks if model_scanned else layer_plan.stack_blocks
    target["params"] = to_stored(target["params"])
  _check_same_structure(stored_tree["params"], target["params"], where,
                        "Point init_from at a checkpoint of the configured model, or list the "
                        "params to start fresh in config.init_fresh.", allow_extra=True)
  stored_state = _subtree(stored_tree.get("model_state") or {}, wanted)
  model_state = _subtree(pick(abstract_variables.get("model_state") or {}), wanted)
  extra = sorted(set(_shapes_by_path(stored_state)) - set(_shapes_by_path(model_state)))
  if extra:
    raise CheckpointError(f"{where} holds model state the configured model lacks: "
                          f"{', '.join(extra[:10])}. It was trained with layers this config "
                          "leaves out (e.g. a linear probe's BatchNorm: set head_norm="
                          "'batchnorm' for that model).")
  state_to_load = _subtree(model_state, lambda name: name in _shapes_by_path(stored_state))
  if state_to_load:
    target["model_state"] = state_to_load
  return InitPlan(path, target, into, convert)


def restore_init(plan: "InitPlan") -> dict:
  """Reads what `plan_init` checked: `{"params": ..., ["model_state": ...]}` subsets, to merge
  with `merge_params`."""
  # Params (+ state) only: the source run's optimiser state stays on disk (partial restore).
  restored = ocp.PyTreeCheckpointer().restore(plan.path / "state", args=ocp.args.PyTreeRestore(
      item=plan.target, restore_args=ocp.checkpoint_utils.construct_restore_args(plan.target),
      partial_restore=True))
  if plan.convert:
    to_model = layer_plan.stack_blocks if plan.convert == "stack" else layer_plan.unstack_blocks
    restored["params"] = to_model(restored["params"])
  return {k: ({plan.into: v} if plan.into else v) for k, v in restored.items()}


@dataclasses.dataclass(frozen=True)
class InitPlan:
  """A checked initialisation source: the step folder, what to read from it, where it goes,
  and the block-layout conversion to apply ("", "stack" or "unstack")."""
  path: epath.Path
  target: dict
  into: str
  convert: str = ""


def _subtree(tree, keep, prefix: str = ""):
  """The nested dict `tree` without the leaves whose path `keep` rejects (empty dicts dropped)."""
  if not isinstance(tree, dict):
    return tree if keep(prefix) else None
  out = {}
  for key, value in tree.items():
    kept = _subtree(value, keep, f"{prefix}/{key}" if prefix else str(key))
    if kept is not None and kept != {}:
      out[key] = kept
  return out


def merge_params(base, loaded):
  """`base` with every leaf that `loaded` has replaced by it."""
  if not isinstance(loaded, dict):
    return loaded
  return {k: merge_params(v, loaded[k]) if k in loaded else v for k, v in base.items()}


def _shapes_by_path(tree) -> dict:
  # path_to_str writes list index 0 and orbax's stored key "0" alike.
  return {sharding.path_to_str(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_same_structure(stored, expected, what: str, fix: str, allow_extra: bool = False):
  flat_stored, flat_expected = _shapes_by_path(stored), _shapes_by_path(expected)
  problems = [f"{k}: missing in checkpoint" for k in flat_expected if k not in flat_stored]
  if not allow_extra:
    problems += [f"{k}: not in the model" for k in flat_stored if k not in flat_expected]
  problems += [f"{k}: checkpoint {flat_stored[k]} vs model {flat_expected[k]}"
               for k in flat_expected if k in flat_stored and flat_stored[k] != flat_expected[k]]
  if problems:
    shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
    raise CheckpointError(f"{what} is a checkpoint of another architecture; {len(problems)} "
                          f"parameters differ:\n  {shown}\n{fix}")
