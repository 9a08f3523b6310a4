"""The trainer: `python -m mll_jax.train --config=configs/mae.py [--workdir=DIR]`.

Resume order: the workdir's latest readable checkpoint, else `config.init_from` (params only),
else scratch. The default workdir is `runs/<task>-<hash of the resolved config>`, so rerunning
the same command resumes the same run and a changed config starts a fresh one. SIGTERM saves a
checkpoint and exits cleanly (`run` raises `Preempted`, the CLI exits 0); after SIGKILL,
rerunning resumes from the last periodic save.
"""

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import hashlib
import json
import math
import os
import pathlib
import signal
import sys

import jax
import ml_collections
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from mll_jax import (allocator, aot, checkpoint, config_checks, evaluators, multihost, optim, run_log,
                     sharding, steps, tasks, tpu_pods, workdir_lock)
from mll_jax.data import class_subsets, pipeline, run_split, sources, transforms
from mll_jax.evaluators import context as eval_context
from mll_jax.models import precision
from mll_jax.storage import lease, locations, objects

# Public: mll_jax.sweep reuses them (absl flags can be defined only once per process).
CONFIG_FLAG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/mae.py or configs/mae.py:vit_b16,imagenet2012.",
    lock_config=True)
WORKDIR_FLAG = flags.DEFINE_string(
    "workdir", None, "Run folder (checkpoints, metrics.jsonl). Default: runs/<task>-<config hash>.")
_COMPILE_ONLY = flags.DEFINE_bool(
    "compile_only", False, "Compile the train step for the configured mesh and report its "
    "per-device memory and FLOPs; train nothing (checks a pod configuration before launch).")
_TOPOLOGY = flags.DEFINE_string(
    "topology", "", "With --compile_only: compile for this TPU pod slice instead (e.g. v5p-128, "
    "v5e-256, v4-32; needs pip install \"jax[tpu]\"), and report HBM per chip against its "
    "capacity, FLOPs, a roofline step time and an MFU bound.")
_TOPOLOGY_SLICES = flags.DEFINE_integer(
    "topology_slices", 1, "With --topology: the number of such slices (data parallel across).")
_LEASE_TTL = flags.DEFINE_float(
    "workdir_lease_s", lease.DEFAULT_TTL_S, "With a gs:// or s3:// --workdir: seconds after its "
    "last renewal that a killed run's lease stops blocking the next run.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", "~/.cache/mll_jax/jax_cache", "JAX persistent compilation cache ('' off).")


class RunError(RuntimeError):
  """A run that cannot start or go on as configured; the message says how to fix it."""


def config_json(config: ml_collections.ConfigDict) -> dict:
  """The config as a run saves it (config.json, checkpoints) and as its default workdir's name
  hashes it, with `dtype="auto"` of the model (and of a distillation teacher) resolved for
  this host's backend.

  Why resolved: "auto" means another policy on another backend, or after the CPU default
  changed (it was float32 until bfloat16_matmul measured faster), and a study reuses a run only
  when the saved config equals its own (experiments/finished_runs.py)."""
  saved = json.loads(config.to_json_best_effort(sort_keys=True))
  for network in ("model", "teacher"):
    if isinstance(saved.get(network), dict) and saved[network].get("dtype") == "auto":
      saved[network]["dtype"] = precision.dtype_name("auto")
  return saved


def default_workdir(config: ml_collections.ConfigDict) -> pathlib.Path:
  digest = hashlib.sha256(json.dumps(config_json(config), sort_keys=True).encode()).hexdigest()
  return pathlib.Path("runs") / f"{config.task}-{digest[:8]}"


def resolve_duration(config, train_examples: int) -> tuple[int, int]:
  """`(total_steps, warmup_steps)` from steps if given, else from epochs of the train split,
  at least `config.min_steps` (when the config has it)."""
  # Epochs count images, not whole batches: 600 epochs of 72 labelled images at batch 64 are
  # 675 steps (flooring to one batch per epoch would give 600, a tenth fewer passes).
  if not config.total_steps:
    check_budget_labels(config)
  steps_per_epoch = train_examples / config.batch_size
  total = config.total_steps or math.ceil(config.num_epochs * steps_per_epoch)
  warmup = config.warmup_steps or math.ceil(config.warmup_epochs * steps_per_epoch)
  if total > 0 and not config.total_steps:
    # The floor: a budget in passes gives a small subset few steps (a 3-class expert's 20
    # passes are 338), too few for the cosine schedule to converge. A budget of 0 passes
    # stays an error below.
    total = max(total, config.get("min_steps", 0))
  if total <= 0:
    raise RunError(f"The run has no steps (config.num_epochs={config.num_epochs}, "
                   f"config.total_steps={config.total_steps}): set config.num_epochs or "
                   "config.total_steps > 0.")
  return total, min(warmup, total)


def check_budget_labels(config) -> None:
  """Refuses a run whose `data.labels` was changed after its config file sized `num_epochs`
  for other labels (`config.budget_sized_for`), unless `num_epochs` was set too."""
  sized = config.get("budget_sized_for")
  if not sized or sized.get("labels") is None:
    return
  labels = config.data.get("labels", "")
  if labels != sized.labels and config.num_epochs == sized.num_epochs:
    raise RunError(
        f"config.data.labels is {labels!r}, but config.num_epochs={config.num_epochs} is the "
        f"budget the config file sized for labels={sized.labels!r}. Put the labels in the "
        f"config arg instead (e.g. --config=configs/finetune.py:mini,animal_mnist,"
        f"labels={labels}), which sizes the budget and batch for them, or set "
        "--config.num_epochs (or --config.total_steps) yourself.")


def check_workdir(workdir) -> None:
  """Refuses a workdir that cannot be a run folder: a local file in the way, or a bucket that
  does not exist or that the credentials may not read (objects.StorageError)."""
  if locations.is_remote(workdir):
    objects.names(workdir)  # one request, before any work, so a typo costs seconds
    return
  if workdir.exists() and not workdir.is_dir():
    raise RunError(f"--workdir={workdir} is a file, not a folder. Give a folder path (it is "
                   "created if missing), or move the file away.")
  for parent in workdir.parents:
    if parent.exists() and not parent.is_dir():
      raise RunError(f"--workdir={workdir}: {parent} is a file, so the folder cannot be made.")


class Preempted(RuntimeError):
  """SIGTERM arrived; a checkpoint was saved. Callers that run several trainings stop too."""


class _StopFlag:
  """Set by SIGTERM; the loop checks it after every step, saves and returns."""

  def __init__(self):
    self.requested = False

  def __call__(self, signum, frame):
    del signum, frame
    self.requested = True


def _fetch(metrics) -> dict:
  return {k: v.item() for k, v in multihost.to_host(metrics).items()}


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, devices=None,
        lease_ttl_s: float = lease.DEFAULT_TTL_S) -> dict:
  """Trains as `config` says in `workdir` (a local folder, gs:// or s3://); returns the last
  evaluation's metrics. `lease_ttl_s`: for a bucket workdir, how long a killed run's lease
  blocks the next run (`storage/lease.py`).

  Everything is validated before anything is written, so a bad config leaves no half run.
  """
  workdir = locations.location(workdir)  # local: absolute, as orbax needs; or a bucket URL
  check_workdir(workdir)
  task, mesh = _task_and_mesh(config, devices)
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None)
  info, class_indices = _class_info(config, builder)
  train_source = class_subsets.apply(sources.data_source(builder, config.data.train_split),
                                     class_indices)
  train_source = run_split.training_source(train_source, config.data, config.seed,
                                           info.class_names)
  total_steps, compiled = _build_steps(task, config, info, mesh, len(train_source))

  local_batch = config.batch_size // jax.process_count()
  dataset = pipeline.train_dataset(
      train_source, local_batch_size=local_batch, seed=config.seed,
      transform=transforms.train_transform(config.data))
  iterator = pipeline.train_iterator(dataset, worker_threads=config.data.worker_threads)
  ctx = eval_context.EvalContext(config, task, builder, mesh, compiled.apply, class_indices)
  evals = evaluators.build_all(config.evals, ctx)  # may reject the config: before any write

  # Initialisation sources are checked before anything is written, unless the run resumes.
  resuming = any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))
  init_plans = None if resuming else _plan_inits(task, config, compiled)

  if not locations.is_remote(workdir):  # a bucket has no folders (and s3fs would create one)
    workdir.mkdir(parents=True, exist_ok=True)
  with workdir_lock.hold(workdir, jax.process_index(), lease_ttl_s) as held:
    return _train(config, workdir, task, mesh, compiled, iterator, evals, init_plans,
                  total_steps, held)


def _train(config, workdir, task, mesh, compiled, iterator, evals, init_plans,
           total_steps, held) -> dict:
  """`run` from its first write on, under the workdir's lock (`held`)."""
  if multihost.is_main_process():
    objects.write(workdir / "config.json", json.dumps(config_json(config), indent=2).encode())
  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint.every_steps,
                                 config.checkpoint.keep, config.checkpoint.keep_every)
  restored = ckpt.restore_latest(compiled.abstract_state, iterator)
  log = run_log.RunLog(workdir, total_steps, restored[0] if restored else 0, config.batch_size)
  if restored:
    step, state = restored
    log.message(f"Resumed from the checkpoint at step {step} in {ckpt.directory}.")
  else:
    step, state = 0, compiled.init()
    if init_plans is None:  # there were checkpoints, but none was readable
      init_plans = _plan_inits(task, config, compiled)
    for source, plan in init_plans:
      for item, values in checkpoint.restore_init(plan).items():  # params (+ model state)
        state[item] = checkpoint.merge_params(state[item], values)
      log.message(f"Initialised {source.into or 'params'} from {source.path}.")
  log.message(f"workdir: {workdir}  |  {total_steps} steps of {config.batch_size} images on "
              f"{mesh.size} {jax.default_backend()} device(s), mesh {dict(mesh.shape)}, "
              f"compute dtype {precision.dtype_name(config.model.get('dtype', 'auto'))}, "
              f"allocator {allocator.loaded_allocator()}")
  hint = allocator.missing_tcmalloc_hint() if jax.default_backend() == "cpu" else ""
  if hint:
    log.message(hint)

  def evaluate(at_step: int) -> dict:
    results = {}
    for evaluator in evals:
      if evaluators.due(evaluator, at_step, total_steps):
        results.update(evaluator(steps.variables(state)))
    if results:
      log.write(at_step, results)
    return results

  stop = _StopFlag()
  # Several processes: JAX's preemption service owns SIGTERM (multihost.agree_to_stop).
  previous_handler = (signal.signal(signal.SIGTERM, stop) if jax.process_count() == 1
                      else None)
  last_eval = evaluate(step) if step == 0 else {}
  pending = None  # (step, metrics) of the last dispatched step, fetched one step late
  try:
    while step < total_steps:
      batch = sharding.global_batch(next(iterator), compiled.batch_sharding)
      state, metrics = compiled.train_step(state, batch)
      step += 1
      # Only ever set here: the SIGTERM handler may set it between any two bytecodes.
      if multihost.agree_to_stop(step, stop.requested):
        stop.requested = True
      if pending:
        _report(log, *pending, config, ckpt)  # overlaps the host with the step just dispatched
      pending = (step, metrics)
      boundary = (step % config.log_steps == 0 or ckpt.should_save(step) or
                  step == total_steps or stop.requested or
                  any(evaluators.due(e, step, total_steps) for e in evals))
      if boundary:
        _report(log, *pending, config, ckpt)
        pending = None
        if ckpt.should_save(step) or step == total_steps or stop.requested:
          held.check()  # a run whose bucket workdir was taken over writes nothing more
          ckpt.save(step, state, iterator, config_json(config))
        if stop.requested:  # preemption grace periods are short: no evaluation, just save
          ckpt.wait()
          raise Preempted(f"SIGTERM: saved the checkpoint at step {step}; rerun the same "
                          "command to resume.")
        last_eval = evaluate(step) or last_eval
        log.restart_window(step)  # keep evaluation time out of the images/s figure
    if step == total_steps and restored and restored[0] == total_steps:
      log.message(f"This run was already complete at step {step}; nothing to do.")
  finally:
    if previous_handler is not None:
      signal.signal(signal.SIGTERM, previous_handler)
    ckpt.close()
    log.close()
  return last_eval


def _task_and_mesh(config, devices, mesh=None):
  config_checks.check(config)
  task = tasks.get(config.task)
  if hasattr(task, "validate"):
    task.validate(config)
  mesh = mesh or sharding.make_mesh(config.mesh, devices)
  sharding.check_batch_size(config.batch_size, mesh)
  return task, mesh


def _class_info(config, builder):
  """The data set's info, restricted to `config.classes` (experts: relabelled 0..k-1,
  everywhere, evaluators too), and the chosen class indices."""
  info = sources.info(builder)
  class_indices = class_subsets.resolve(config.get("classes", ""), info.class_names)
  return class_subsets.restrict_info(info, class_indices), class_indices


def _build_steps(task, config, info, mesh, train_examples: int):
  """`(total_steps, compiled)`: the optimizer and the jitted, sharded steps."""
  total_steps, warmup_steps = resolve_duration(config, train_examples)
  schedule = optim.schedule(config.optim, config.batch_size, total_steps, warmup_steps)
  tx = optim.make(config.optim, config.batch_size, total_steps, warmup_steps)
  compiled = steps.build(task, config, info, tx, mesh, schedule)  # checks image/patch sizes
  return total_steps, compiled


def compile_only(config: ml_collections.ConfigDict, devices=None, topology: str = "",
                 topology_slices: int = 1) -> aot.CompileReport:
  """Lowers and compiles the train step for the configured mesh, running nothing and reading
  no data (the data set's metadata suffices), and returns its memory and FLOPs.

  `topology` (a TPU pod slice name, `tpu_pods`) compiles with the TPU compiler for
  `topology_slices` such slices instead of for `devices`; `config.model.dtype="auto"` then
  resolves for TPU, not for this host."""
  mesh, pod = None, None
  if topology:
    pod = tpu_pods.pod_slice(topology)
    mesh = tpu_pods.pod_mesh(config.mesh, pod, topology_slices)
    config = ml_collections.ConfigDict(config.to_dict())  # the caller's config stays as it was
    config.model.dtype = precision.dtype_name(config.model.get("dtype", "auto"), "tpu")
  task, mesh = _task_and_mesh(config, devices, mesh)
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None, prepare=False)
  info, _ = _class_info(config, builder)
  split = config.data.train_split.split("[")[0]
  # Without split sizes in the metadata, the schedule's length is a guess; compiling does
  # not depend on it.
  _, compiled = _build_steps(task, config, info, mesh,
                             info.split_sizes.get(split) or config.batch_size)
  return aot.compile_train_step(compiled, config, mesh, pod, topology_slices)


def _plan_inits(task, config, compiled) -> list:
  """`(source, checked plan)` for each checkpoint a fresh run starts from."""
  return [(source, checkpoint.plan_init(source.path, steps.variables(compiled.abstract_state),
                                        fresh=source.fresh, into=source.into))
          for source in tasks.init_sources(task, config)]


def _report(log, step, metrics, config, ckpt):
  values = _fetch(metrics)
  if not values.pop("finite"):
    last = ckpt.latest_step()
    raise RunError(
        f"The loss or gradient became NaN/Inf at step {step}; the run stopped and that update "
        f"was not applied. Last good checkpoint: "
        f"{f'step {last} in {ckpt.directory}' if last is not None else 'none yet'}. Lower "
        "config.optim.base_lr or set config.optim.grad_clip_norm.")
  log.step(step, values)
  if step % config.log_steps == 0:
    values["images_per_sec"] = log.throughput(step)
    log.write(step, values)


def setup_runtime() -> None:
  """Quiet logs and the persistent compilation cache, for the CLIs that train."""
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    multihost.initialize_from_flags()  # before anything touches a device
  except multihost.LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  setup_runtime()
  config = CONFIG_FLAG.value
  try:
    if _TOPOLOGY.value and not _COMPILE_ONLY.value:
      raise RunError(f"--topology={_TOPOLOGY.value} compiles for a TPU pod without one; it "
                     "needs --compile_only (this host cannot run the pod's program).")
    if _COMPILE_ONLY.value:
      report = compile_only(config, topology=_TOPOLOGY.value,
                            topology_slices=_TOPOLOGY_SLICES.value)
      if multihost.is_main_process():
        print(report.text(), flush=True)
      return
    workdir = WORKDIR_FLAG.value or default_workdir(config)
    run(config, workdir, lease_ttl_s=_LEASE_TTL.value)
  except Preempted as e:  # a clean, resumable stop
    print(str(e), flush=True)
    sys.exit(0)
  except (RunError, ValueError, FileNotFoundError, checkpoint.CheckpointError,
          workdir_lock.WorkdirBusy, lease.LeaseLost, objects.StorageError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
