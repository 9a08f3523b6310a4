"""Label-efficiency study: top-1 test accuracy against label fraction, on converged models.

    python -m experiments.label_efficiency                 # animal_mnist
    python -m experiments.label_efficiency --data=mnist --manual_dir=DIR   # MNIST's IDX files
    python -m experiments.label_efficiency --quick         # a minutes-long smoke run (tests)

Every run uses one model size (`--model`, default `mini`). Methods, at every fraction and seed:
  scratch          the ViT trained on the labelled subset only
  mae_finetune     MAE pre-training (every training image, no labels) + fine-tuning
  mae_probe        MAE pre-training + linear probe (frozen trunk, BatchNorm + linear head on
                   the cls token, MAE's protocol, of the last 4 blocks, as DINO probes a ViT-S;
                   configs/linear_probe.py `pooled_read_out`, recipe_probe_read_blocks.md)
  mae_token_probe  the same probe on every patch token (linear_probe.py's `tokens`: the read-out
                   and its weight decay, chosen on the validation holdout,
                   experiments/results/probe_features.md, recipe_probe_token_wd_and_1pct.md)
  simclr_finetune  SimCLR pre-training + fine-tuning from the encoder's output
  simclr_proj_finetune  SimCLR pre-training + fine-tuning from the first layer of its
                   projection head, as SimCLRv2 does (`model.projection_layers=1`)
  distill          SimCLRv2's step 3, at the fractions that leave images unlabelled: the method
                   with the best validation accuracy at that fraction is the teacher; a student
                   of the same size, starting from the teacher's pre-trained encoder, learns the
                   teacher's predictions on every training image. `--distill_student=MODEL`
                   makes the student another architecture (e.g. the `mini` ViT under a `cnn_s`
                   teacher, as DeiT distils a convnet into a ViT): it starts at random and
                   trains for the from-scratch budget on all labels, since no pre-trained
                   encoder of its kind is at hand. `--teacher_ensemble=K` makes the teacher
                   K fine-tunes of that method on the same labelled subset (other seeds of
                   head and data order), the student learning their mean prediction, as
                   Hinton et al. distilled an ensemble into one model
Every run, pre-training included, holds out `--validation` of the training split (the same
images in every run). Budgets are the configs' own, in epochs (configs/finetune.py `EPOCHS`),
sized where the validation curves flatten. Each adaptation run logs its validation accuracy on
the holdout `--curve_points` times (the learning curves, committed as a PNG) and reads test once,
at its end. Choices made inside the study (the distillation teacher) use validation accuracy,
never test. The pre-training runs once (seed 0); the seeds vary the labelled subset, the head's
initialisation and the data order.
Writes `<out>/label_efficiency[_<data>].{md,csv,png}` and `..._curves.png`, with the reference
baselines of experiments/baselines.py beside (run that first on the same data). Finished runs
are skipped on a rerun (their `result.json`), and a preempted study resumes, only where a run
was trained with the config the study builds now; a run of another config (an earlier recipe)
stops the study with the keys that differ (experiments/finished_runs.py).
"""

import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import curves, finished_runs, smoke, study_cli  # noqa: E402
from experiments import label_efficiency_report as report  # noqa: E402
import configs  # noqa: E402
from configs import finetune  # noqa: E402
from mll_jax import sweep, train  # noqa: E402
from mll_jax.data import holdout, label_fractions, run_split, sources, transforms  # noqa: E402
from mll_jax.models import precision  # noqa: E402

_QUICK = flags.DEFINE_bool("quick", False, "The `mu` model and a few steps: a smoke test.")
_DATA = flags.DEFINE_enum("data", "animal_mnist", ["animal_mnist", "mnist"], "Data set.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of MNIST's IDX files (--data=mnist).")
_MODEL = flags.DEFINE_string("model", "mini", "Model size of every run (configs/finetune.py).")
_WORKDIR = flags.DEFINE_string("study_dir", None, "Runs folder (default runs/label_efficiency_*).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per point (default 2; quick 1).")
_FRACTIONS = flags.DEFINE_list("fractions", None, "Label fractions (default 1%,10%,100%).")
_METHODS = flags.DEFINE_list("methods", None, "Adaptation methods (default: all but "
                             "mae_token_probe).")
_DISTILL_FRACTIONS = flags.DEFINE_list(
    "distill_fractions", None, "Fractions to distil at (default: those below 100%, where "
    "images are left unlabelled).")
_SKIP = flags.DEFINE_list("skip", [], "Cells not run, as METHOD@FRACTION (e.g. scratch@100%), "
                         "to fit a time budget; the report says so.")
_DISTILL_STUDENT = flags.DEFINE_string(
    "distill_student", None, "Model of the distillation student (default: the study's model; "
    "another architecture starts at random).")
_TEACHER_ENSEMBLE = flags.DEFINE_integer(
    "teacher_ensemble", 1, "Teachers per distillation: the chosen method fine-tuned this many "
    "times on each seed's labelled subset; the student learns their mean prediction.")
_AUGMENT = flags.DEFINE_string(
    "augment", "", "Training augmentation of every adaptation and distillation run (e.g. "
    "shift+flip; default: the data set's at each fraction, configs/finetune.py augment_for). "
    "Pre-training keeps its own. Names its runs folder and reports.")
_VALIDATION = flags.DEFINE_float("validation", 0.1, "Fraction of train held out for validation.")
_CURVE_POINTS = flags.DEFINE_integer("curve_points", 10, "Validation evaluations per run.")
_PRETRAIN_EPOCHS = flags.DEFINE_float("pretrain_epochs", None,
                                      "Epochs of MAE and SimCLR pre-training (default: the "
                                      "configs' own for the data set).")
_DTYPE = flags.DEFINE_string("dtype", "", "config.model.dtype of every run, pre-training, "
                             "teachers and students included (default: the configs' own, "
                             "auto: bfloat16_matmul on CPU); float32 reruns a study "
                             "committed before 2026-12-07 that left it unset as it ran.")

ADAPTATIONS = {  # method -> (config file, pre-training it starts from)
    "scratch": ("finetune", None),
    "mae_finetune": ("finetune", "mae"),
    "mae_probe": ("linear_probe", "mae"),
    "mae_token_probe": ("linear_probe", "mae"),
    "simclr_finetune": ("finetune", "simclr"),
    "simclr_proj_finetune": ("finetune", "simclr"),
}
# The default methods: the token probe and SimCLRv2's fine-tuning from the projection head are
# run by naming them (--methods); the committed reports predate the latter.
DEFAULT_METHODS = ("scratch", "mae_finetune", "mae_probe", "simclr_finetune")
# What a method changes in its config file's model (the probe's read-out; the projection layer
# a SimCLR fine-tune keeps). A distillation teacher of that method gets the same.
# (The token probe's config arg sets its pool too, with the weight decay of that read-out.)
MODEL_OVERRIDES = {"mae_token_probe": {"model.pool": "tokens"},
                   "simclr_proj_finetune": {"model.projection_layers": 1}}
PROBES = ("mae_probe", "mae_token_probe")  # a BatchNorm before the head
CONFIG_ARGS = {"mae_token_probe": "tokens"}  # config-file arg tokens of a method
# The configs of the runs that learn from labels or a teacher: `--augment` changes theirs (the
# pre-training keeps its own views).
ADAPTATION_CONFIGS = ("finetune", "linear_probe", "distill")
METRIC = "classification/accuracy"
VALIDATION_METRIC = "validation/accuracy"


def _config(name: str, settings: dict, labels: str = "", extra_arg: str = "", model: str = "",
            **overrides):
  """`configs/<name>.py` for the study's data and model (or `model`; and `labels`, and
  `extra_arg` tokens such as distill.py's `teacher=...`), with its holdout and `overrides`.

  The labels go into the config's arg, not into `data.labels` afterwards: the config sizes its
  budget (and batch) by them, and an override of `data.labels` would keep the 10% budget."""
  model = model or settings["model"]
  model = smoke.model(model) if settings["quick"] else model
  arg = ",".join(filter(None, [model, settings["data"], labels and f"labels={labels}",
                               extra_arg]))
  config = configs.get_config(name, arg)
  overrides = {"data.validation": settings["validation"], **overrides}
  if settings.get("augment") and name in ADAPTATION_CONFIGS:
    overrides["data.augment"] = settings["augment"]
  if settings.get("dtype"):
    overrides["model.dtype"] = settings["dtype"]
    if name == "distill":
      overrides["teacher.dtype"] = settings["dtype"]
  if settings["manual_dir"]:
    overrides["data.manual_dir"] = settings["manual_dir"]
  if settings["quick"]:
    overrides = {**smoke.shrink(config), **overrides}
  return sweep.apply_overrides(config, overrides)


def _run(config, workdir: pathlib.Path, training_images: int, settings: dict) -> dict:
  """Trains (unless finished before with the same config); returns test accuracy, final
  validation accuracy, the validation curve and the step count."""
  steps, _ = train.resolve_duration(config, training_images)
  config = sweep.apply_overrides(config, {
      "evals.classification.log_steps": steps,  # test: at the end (and step 0) only
      "checkpoint.every_steps": max(steps // 4, 1)})
  config.evals.validation = {"kind": "classification", "split": "holdout",
                             "log_steps": max(steps // settings["curve_points"], 1),
                             "num_examples": 0, "batch_size": 256}
  result = finished_runs.finished_result(workdir, config)
  if result is None:
    started = time.time()
    train.run(config, workdir)
    final = sweep.final_metrics(workdir)
    result = {"test": final[METRIC], "validation": final[VALIDATION_METRIC],
              "curve": curves.read(workdir), "steps": steps, "seconds": time.time() - started}
    (workdir / "result.json").write_text(json.dumps(result))
  # The curve is read again from metrics.jsonl, the run's source of truth: a result written by
  # an older version may hold a resumed run's step twice.
  return {**result, "curve": curves.read(workdir)}


def _training_images(settings: dict, fractions: list[str]) -> dict:
  """Images each run trains on: `{fraction: labelled images}`, and under `"all"` every
  training image (the holdout removed), which distillation and pre-training see."""
  config = _config("finetune", settings)
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None)
  train_source = sources.data_source(builder, "train")
  names = sources.info(builder).class_names
  counts = {}
  for fraction in [*fractions, "all"]:
    data = sweep.apply_overrides(config, {"data.labels": "" if fraction == "all" else fraction})
    counts[fraction] = len(run_split.training_source(train_source, data.data, 0, names))
  return counts


def pretrain(study_dir: pathlib.Path, settings: dict, methods) -> dict:
  """The pre-training runs `methods` start from, MAE and/or SimCLR (resumed, or noted
  complete); returns their workdirs."""
  runs = {}
  needed = {ADAPTATIONS[m][1] for m in methods}
  for name in [n for n in ("mae", "simclr") if n in needed]:
    overrides = {}
    if settings["pretrain_epochs"] and not settings["quick"]:
      overrides = {"num_epochs": settings["pretrain_epochs"]}
    config = _config(name, settings, **overrides)
    holdout.evaluate_on_holdout(config)  # test is read only at adaptation runs' ends
    runs[name] = study_dir / f"pretrain_{name}"
    finished_runs.check_same_config(runs[name], config)  # e.g. after --pretrain_epochs changed
    started = time.time()
    train.run(config, runs[name])
    settings["timings"][f"pretrain_{name}"] = time.time() - started
  return runs


def _adaptation_config(method: str, fraction: str, seed: int, pretrained: dict,
                       settings: dict):
  config_name, start = ADAPTATIONS[method]
  overrides = {"seed": seed, "init_from": str(pretrained[start]) if start else "",
               **MODEL_OVERRIDES.get(method, {})}
  if start and config_name == "finetune" and not settings["quick"]:
    overrides.update(finetune.pretrained_overrides(settings["data"], fraction,
                                                   settings["model"]))
  return _config(config_name, settings, labels=fraction,
                 extra_arg=CONFIG_ARGS.get(method, ""), **overrides)


def _distill_config(teacher: str, fraction: str, seed: int, study_dir: pathlib.Path,
                    pretrained: dict, settings: dict):
  tag = _tag(fraction)
  start = ADAPTATIONS[teacher][1]
  other_student = report.other_student(settings)
  # The teacher is the study's model (a ViT or a CNN), with its method's changes: a probe's
  # BatchNorm before the head, and its read-out.
  model = smoke.model(settings["model"]) if settings["quick"] else settings["model"]
  config = _config("distill", settings, extra_arg=f"teacher={model}", model=other_student)
  teacher_model = {f"teacher.{key.split('.', 1)[1]}": value
                   for key, value in MODEL_OVERRIDES.get(teacher, {}).items()}
  if teacher in PROBES:  # the probe's head: its BatchNorm and read-out, as its config set them
    probe = _adaptation_config(teacher, fraction, seed, pretrained, settings).model
    teacher_model.update({f"teacher.{key}": probe[key]
                          for key in ("head_norm", "pool", "read_blocks")})
  student_start = {"student_init_from": str(pretrained[start]) if start else ""}
  if other_student:
    # The teacher's pre-trained encoder is of another architecture: the student starts at
    # random, so it gets what a model trained from scratch on every label gets (the config's
    # 10 passes are sized for a student that starts pre-trained).
    student_start = {"student_init_from": "",
                     "num_epochs": finetune.budget_epochs(settings["data"], "100%", False),
                     "warmup_epochs": finetune.warmup_epochs(settings["data"], "100%")}
  members = [str(study_dir / member_run_name(teacher, fraction, seed, j))
             for j in range(1, settings.get("teacher_ensemble", 1))]
  return sweep.apply_overrides(config, {
      "data.labels": fraction, "seed": seed, **teacher_model,
      "init_from": str(study_dir / f"{teacher}_{tag}_seed{seed}"),
      "teacher_ensemble": tuple(members), **student_start})


def member_run_name(method: str, fraction: str, seed: int, member: int) -> str:
  """The folder of a teacher ensemble's `member`-th extra fine-tune (member 0 is the study's
  own run of that seed)."""
  return f"{method}_{_tag(fraction)}_seed{seed}_member{member}"


def _member_config(method: str, fraction: str, seed: int, member: int, pretrained: dict,
                   settings: dict):
  """An ensemble member: the method's run of `seed` with another seed of head initialisation
  and data order, on the same labelled subset (`data.labels_seed`), so that the ensemble sees
  no more labels than one run."""
  config = _adaptation_config(method, fraction, seed + 1000 * member, pretrained, settings)
  # Set here, not a config default: the study's other runs keep the configs they had.
  config.data.labels_seed = seed
  return config


def distill_run_name(fraction: str, seed: int, settings: dict) -> str:
  """A distillation run's folder: the student is named when it is not the study's model, so
  its runs never stand in for (or replace) those of a same-architecture student."""
  student = report.other_student(settings)
  ensemble = settings.get("teacher_ensemble", 1)
  return (f"distill{'_' + student if student else ''}"
          f"{f'_ensemble{ensemble}' if ensemble > 1 else ''}_{_tag(fraction)}_seed{seed}")


def _tag(fraction: str) -> str:
  return fraction.replace("%", "pct").replace("=", "")


def parse_skip(entries: list[str], methods: list[str], fractions: list[str]) -> set:
  """`{(method, fraction)}` of `--skip` entries METHOD@FRACTION, each checked."""
  cells = set()
  for entry in entries:
    method, _, fraction = entry.partition("@")
    if method not in methods or fraction not in fractions:
      raise app.UsageError(f"--skip={entry}: expected METHOD@FRACTION with a method of "
                           f"--methods ({', '.join(methods)}) and a fraction of --fractions "
                           f"({', '.join(fractions)}).")
    cells.add((method, fraction))
  return cells


def run_study(study_dir: pathlib.Path, out: pathlib.Path, settings: dict, seeds: int,
              fractions: list[str], methods: list[str], distill_fractions: list[str],
              skip: frozenset = frozenset()) -> dict:
  """Runs every point but the `skip` cells `(method, fraction)`; returns `{method: {fraction:
  [run result per seed]}}`, writes reports."""
  settings.setdefault("timings", {})
  settings["skipped"] = sorted(f"{m}@{f}" for m, f in skip)
  started = time.time()
  pretrained = pretrain(study_dir, settings, methods)
  images = _training_images(settings, fractions)
  runs = {m: {f: [] for f in fractions} for m in methods}
  teachers = {}
  for fraction in fractions:
    for seed in range(seeds):
      for method in [m for m in methods if (m, fraction) not in skip]:
        config = _adaptation_config(method, fraction, seed, pretrained, settings)
        config.batch_size = label_fractions.batch_size_for(config.batch_size, images[fraction])
        runs[method][fraction].append(_run(
            config, study_dir / f"{method}_{_tag(fraction)}_seed{seed}", images[fraction],
            settings))
    if fraction not in distill_fractions:
      continue
    # The teacher is chosen on validation accuracy: test is read only to report.
    teachers[fraction] = max([m for m in methods if runs[m][fraction]], key=lambda m: np.mean(
        [r["validation"] for r in runs[m][fraction]]))
    runs.setdefault("distill", {f: [] for f in fractions})
    for seed in range(seeds):
      for member in range(1, settings.get("teacher_ensemble", 1)):
        config = _member_config(teachers[fraction], fraction, seed, member, pretrained,
                                settings)
        config.batch_size = label_fractions.batch_size_for(config.batch_size, images[fraction])
        members = settings.setdefault("ensemble_members", {}).setdefault(fraction, [])
        members.append(_run(config, study_dir / member_run_name(teachers[fraction], fraction,
                                                                 seed, member),
                            images[fraction], settings))
      config = _distill_config(teachers[fraction], fraction, seed, study_dir, pretrained,
                               settings)
      runs["distill"][fraction].append(_run(
          config, study_dir / distill_run_name(fraction, seed, settings), images["all"],
          settings))
  settings["timings"]["total"] = time.time() - started
  report.write(runs, teachers, images, settings, out)
  return runs


def main(argv):
  del argv
  train.setup_runtime()
  quick, data = _QUICK.value, _DATA.value
  study_cli.require_mnist_files(data, _MANUAL_DIR.value)
  methods = _METHODS.value or list(DEFAULT_METHODS)
  unknown = sorted(set(methods) - set(ADAPTATIONS))
  if unknown:
    raise app.UsageError(f"--methods: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(ADAPTATIONS)}.")
  if _AUGMENT.value:
    try:
      transforms.parse_augment(_AUGMENT.value)
    except ValueError as error:
      raise app.UsageError(f"--augment: {error}") from None
  if _DTYPE.value:
    try:
      precision.dtype_name(_DTYPE.value)
    except ValueError as error:
      raise app.UsageError(f"--dtype: {error}") from None
  if _TEACHER_ENSEMBLE.value < 1:
    raise app.UsageError(f"--teacher_ensemble={_TEACHER_ENSEMBLE.value}: expected a count of "
                         "teachers, 1 or more (1: the chosen method's run alone).")
  if _DISTILL_STUDENT.value and _DISTILL_STUDENT.value not in finetune.MODELS:
    # Checked here, not when the first distillation starts an hour into the study.
    raise app.UsageError(f"--distill_student={_DISTILL_STUDENT.value}: unknown model; known: "
                         f"{', '.join(finetune.MODELS)}.")
  fractions = _FRACTIONS.value or (["10%"] if quick else ["1%", "10%", "100%"])
  settings = {"quick": quick, "data": data, "model": _MODEL.value,
              "manual_dir": _MANUAL_DIR.value, "validation": _VALIDATION.value,
              "curve_points": _CURVE_POINTS.value, "pretrain_epochs": _PRETRAIN_EPOCHS.value,
              "distill_student": _DISTILL_STUDENT.value,
              "teacher_ensemble": _TEACHER_ENSEMBLE.value, "augment": _AUGMENT.value,
              "dtype": _DTYPE.value, "command": study_cli.command_line(sys.argv)}
  study_dir = pathlib.Path(_WORKDIR.value or
                           f"runs/label_efficiency{report.study_suffix(settings)}")
  distill_fractions = (_DISTILL_FRACTIONS.value if _DISTILL_FRACTIONS.value is not None
                       else [f for f in fractions if f != "100%"])
  skip = frozenset(parse_skip(_SKIP.value, methods, fractions))
  with finished_runs.stale_runs_stop("label_efficiency.py"):
    run_study(study_dir.absolute(), pathlib.Path(_OUT.value), settings,
              seeds=_SEEDS.value or (1 if quick else 2), fractions=fractions, methods=methods,
              distill_fractions=distill_fractions, skip=skip)


if __name__ == "__main__":
  app.run(main)
