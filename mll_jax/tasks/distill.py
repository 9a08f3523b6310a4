"""Distillation (SimCLRv2's step 3): a student learns a fixed teacher's softened predictions.

The model holds `student` and `teacher` classifiers. The teacher comes from its training run
through `config.init_from` (see `init_sources`); its output is stop-gradiented
and `config.optim.freeze` keeps its params fixed. The student trains on every image of the
split (labelled or not), optionally mixed with cross-entropy on the labelled ones. The student
starts at random, or from a pre-trained encoder (`config.student_init_from`).
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from mll_jax import tasks
from mll_jax.data import sources
from mll_jax.models import heads
from mll_jax.tasks import supervised


class DistillModel(nnx.Module):
  """`{"student", "teacher"}`; calling it runs the student."""

  def __init__(self, student: heads.Classifier, teacher: heads.Classifier):
    self.student, self.teacher = student, teacher

  def __call__(self, images, key=None):
    return self.student(images, key)


def validate(config: ml_collections.ConfigDict) -> None:
  """A teacher checkpoint is required: distilling a random teacher teaches nothing."""
  if not config.init_from:
    raise ValueError("Distillation needs the teacher's training run: set "
                     "--config.init_from=<workdir of a fine-tuning run> (its model must match "
                     "config.teacher).")


def init_sources(config: ml_collections.ConfigDict) -> list:
  """The teacher from `init_from`; the student's encoder from `student_init_from` when set
  (e.g. the pre-training run the teacher was fine-tuned from), its head always fresh."""
  sources_ = [tasks.InitSource(config.init_from, "teacher")]
  if config.get("student_init_from", ""):
    sources_.append(tasks.InitSource(config.student_init_from, "student", ("^student/head/",)))
  return sources_


def make_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> DistillModel:
  """Student from `config.model`, teacher from `config.teacher` (its architecture)."""
  return DistillModel(supervised.classifier(config.model, config, info, rngs),
                      supervised.classifier(config.teacher, config, info, rngs))


def loss(model: DistillModel, batch: dict, key: jax.Array, config):
  """`(1 - a) * CE(student / T, softmax(teacher / T)) + a * CE on labelled examples`."""
  t = config.distill_temperature
  teacher_logits = jax.lax.stop_gradient(model.teacher(batch["image"])[0])
  student_logits, _ = model.student(batch["image"], key)
  soft = optax.softmax_cross_entropy(student_logits / t, jax.nn.softmax(teacher_logits / t))
  value = soft.mean()
  metrics = {"distill_loss": value,
             "teacher_agreement": (student_logits.argmax(-1) == teacher_logits.argmax(-1)).mean()}
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
