"""Distillation (SimCLRv2's step 3): a student learns a fixed teacher's softened predictions.

The model holds `student` and `teacher` classifiers. The teacher comes from its training run
through `config.init_from` (see `init_sources`); its output is stop-gradiented and
`config.optim.freeze` keeps its params fixed. `config.teacher_ensemble` names more runs of the
teacher's architecture (`teacher_1`, `teacher_2`, ...): the student then learns the mean of
their softened predictions, as Hinton et al. distilled an ensemble into one model. The student
trains on every image of the split (labelled or not), optionally mixed with cross-entropy on
the labelled ones. It starts at random, or from a pre-trained encoder
(`config.student_init_from`).
"""

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from mll_jax import tasks
from mll_jax.data import sources
from mll_jax.models import heads
from mll_jax.tasks import supervised


def teacher_keys(count: int) -> list[str]:
  """The model's keys of `count` teachers: `teacher`, then `teacher_1`, `teacher_2`, ..."""
  return ["teacher", *[f"teacher_{i}" for i in range(1, count)]]


def teacher_runs(config: ml_collections.ConfigDict) -> list[str]:
  """The teachers' training runs: `init_from`, then those of `teacher_ensemble`."""
  return [config.init_from, *config.get("teacher_ensemble", ())]


class DistillModel(nnx.Module):
  """`{"student", "teacher", "teacher_1", ...}`; calling it runs the student."""

  def __init__(self, student: heads.Classifier, *teachers: heads.Classifier):
    self.student = student
    # Top-level keys, one per teacher, so that each loads from its own run (InitSource.into).
    self.teacher_count = len(teachers)
    for key, teacher in zip(teacher_keys(len(teachers)), teachers):
      setattr(self, key, teacher)

  def teachers(self) -> list[heads.Classifier]:
    """Every teacher, `teacher` first."""
    return [getattr(self, key) for key in teacher_keys(self.teacher_count)]

  def __call__(self, images, key=None):
    return self.student(images, key)


def validate(config: ml_collections.ConfigDict) -> None:
  """A teacher checkpoint is required: distilling a random teacher teaches nothing."""
  if not config.init_from:
    raise ValueError("Distillation needs the teacher's training run: set "
                     "--config.init_from=<workdir of a fine-tuning run> (its model must match "
                     "config.teacher).")
  ensemble = config.get("teacher_ensemble", ())
  if isinstance(ensemble, str) or not all(isinstance(r, str) and r for r in ensemble):
    raise ValueError(f"config.teacher_ensemble={ensemble!r}: expected a tuple of training-run "
                     "folders (more teachers of config.teacher's architecture), e.g. "
                     "--config.teacher_ensemble='(\"runs/a\", \"runs/b\")'.")
  frozen = [re.compile(p) for p in config.optim.get("freeze", ())]
  loose = [k for k in teacher_keys(len(teacher_runs(config)))
           if not any(p.search(f"{k}/head/kernel") for p in frozen)]
  if loose:
    raise ValueError(f"config.optim.freeze={tuple(config.optim.get('freeze', ()))!r} leaves "
                     f"the teacher(s) {', '.join(loose)} trainable: weight decay would change "
                     "them. Freeze them, e.g. --config.optim.freeze='(\"^teacher\",)'.")


def init_sources(config: ml_collections.ConfigDict) -> list:
  """The teacher from `init_from`; the student's encoder from `student_init_from` when set
  (e.g. the pre-training run the teacher was fine-tuned from), its head always fresh."""
  sources_ = [tasks.InitSource(run, key) for run, key in
              zip(teacher_runs(config), teacher_keys(len(teacher_runs(config))))]
  if config.get("student_init_from", ""):
    sources_.append(tasks.InitSource(config.student_init_from, "student", ("^student/head/",)))
  return sources_


def make_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> DistillModel:
  """Student from `config.model`, teachers from `config.teacher` (their architecture)."""
  return DistillModel(supervised.classifier(config.model, config, info, rngs),
                      *[supervised.classifier(config.teacher, config, info, rngs)
                        for _ in teacher_runs(config)])


def loss(model: DistillModel, batch: dict, key: jax.Array, config):
  """`(1 - a) * CE(student / T, p) + a * CE on labelled examples`, with `p` the teachers'
  mean of `softmax(teacher / T)` (one teacher: its own)."""
  t = config.distill_temperature
  targets = jax.lax.stop_gradient(jnp.mean(jnp.stack(
      [jax.nn.softmax(teacher(batch["image"])[0] / t) for teacher in model.teachers()]), 0))
  student_logits, _ = model.student(batch["image"], key)
  soft = optax.softmax_cross_entropy(student_logits / t, targets)
  value = soft.mean()
  metrics = {"distill_loss": value,
             "teacher_agreement": (student_logits.argmax(-1) == targets.argmax(-1)).mean()}
  alpha = config.get("labelled_weight", 0.0)
  if alpha > 0:
    mask = batch["labelled"].astype(jnp.float32)
    hard = optax.softmax_cross_entropy_with_integer_labels(student_logits, batch["label"])
    labelled_ce = (hard * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    value = (1 - alpha) * value + alpha * labelled_ce
    metrics["labelled_ce"] = labelled_ce
  metrics["loss"] = value
  return value, metrics


def logits(model: DistillModel, images: jax.Array) -> jax.Array:
  """The student's class scores."""
  return model.student(images)[0]


def features(model: DistillModel, images: jax.Array) -> jax.Array:
  """The student's pooled representation."""
  return model.student.encoder(images)[0]
