"""Distillation: the teacher loads and stays fixed, the student learns, resume is exact."""

import shutil

import numpy as np
import pytest

from mll_jax import train
from test_train import _assert_same, _metrics, _read_params


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, data_dir):
  from conftest import small_finetune_config
  workdir = tmp_path_factory.mktemp("teacher")
  train.run(small_finetune_config(data_dir, total_steps=6), workdir)
  return workdir


@pytest.mark.slow
def test_distill_keeps_the_teacher_and_trains_the_student(teacher_run, make_distill_config,
                                                          tmp_path):
  workdir = tmp_path / "student"
  config = make_distill_config(init_from=str(teacher_run), labelled_weight=0.5)
  train.run(config, workdir)
  teacher = _read_params(teacher_run, 6)
  distilled = _read_params(workdir, 6)
  _assert_same({k[len("teacher/"):]: v for k, v in distilled.items() if k.startswith("teacher/")},
               teacher)
  metrics = [m for m in _metrics(workdir) if "loss" in m]
  assert all(np.isfinite(m["distill_loss"]) and np.isfinite(m["labelled_ce"]) for m in metrics)
  assert [m["step"] for m in _metrics(workdir) if "classification/accuracy" in m] == [0, 6]

  shutil.rmtree(workdir / "checkpoints" / "6")
  train.run(config, workdir)
  _assert_same(_read_params(workdir, 6), distilled)


def test_distill_without_a_teacher_is_refused(make_distill_config, tmp_path):
  with pytest.raises(ValueError, match="needs the teacher's training run"):
    train.run(make_distill_config(), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_teacher_of_another_architecture_is_named(teacher_run, make_distill_config, tmp_path):
  from mll_jax import checkpoint
  config = make_distill_config(init_from=str(teacher_run), **{"teacher.variant": "mini"})
  with pytest.raises(checkpoint.CheckpointError, match="(?s)another architecture.*encoder/"):
    train.run(config, tmp_path / "run")


@pytest.mark.slow
def test_student_starts_from_a_pretrained_encoder_with_a_fresh_head(teacher_run,
                                                                    make_distill_config,
                                                                    tmp_path):
  # Everything is frozen, so after the run the student still holds its initial params.
  config = make_distill_config(init_from=str(teacher_run), student_init_from=str(teacher_run),
                               **{"optim.freeze": ("^teacher/", "^student/")})
  train.run(config, tmp_path / "run")
  source = _read_params(teacher_run, 6)
  student = {k[len("student/"):]: v for k, v in _read_params(tmp_path / "run", 6).items()
             if k.startswith("student/")}
  _assert_same({k: v for k, v in student.items() if k.startswith("encoder/")},
               {k: v for k, v in source.items() if k.startswith("encoder/")})
  heads = [k for k in student if k.startswith("head/")]
  assert heads and not any(np.array_equal(student[k], source[k]) for k in heads)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, data_dir):
  from conftest import small_classifier_config
  workdir = tmp_path_factory.mktemp("probe")
  train.run(small_classifier_config("linear_probe", data_dir), workdir)
  return workdir


@pytest.mark.slow
def test_a_linear_probe_teacher_loads_with_its_batchnorm(probe_run, make_distill_config,
                                                        tmp_path):
  import orbax.checkpoint as ocp
  from mll_jax import checkpoint
  from mll_jax.hub import run_import
  probe = run_import.run_config(probe_run).model
  read_out = {"teacher.pool": probe.pool, "teacher.read_blocks": probe.read_blocks}
  with pytest.raises(checkpoint.CheckpointError, match="model state the configured model "
                                                       "lacks: head_norm"):
    train.run(make_distill_config(init_from=str(probe_run), **read_out), tmp_path / "no_bn")
  assert not (tmp_path / "no_bn" / "checkpoints").exists()
  config = make_distill_config(init_from=str(probe_run),
                               **{"teacher.head_norm": "batchnorm", **read_out})
  train.run(config, tmp_path / "bn")
  read = lambda run: ocp.PyTreeCheckpointer().restore(
      checkpoint.step_dir(run) / "state")["model_state"]
  np.testing.assert_array_equal(read(tmp_path / "bn")["teacher"]["head_norm"]["mean"],
                                read(probe_run)["head_norm"]["mean"])
  assert np.abs(read(probe_run)["head_norm"]["mean"]).sum() > 0  # trained statistics


@pytest.fixture(scope="module")
def second_teacher_run(tmp_path_factory, data_dir):
  from conftest import small_finetune_config
  workdir = tmp_path_factory.mktemp("teacher_1")
  train.run(small_finetune_config(data_dir, total_steps=6, seed=1), workdir)
  return workdir


@pytest.mark.slow
def test_an_ensemble_of_teachers_loads_each_run_and_keeps_them_fixed(
    teacher_run, second_teacher_run, make_distill_config, tmp_path):
  config = make_distill_config(init_from=str(teacher_run),
                               teacher_ensemble=(str(second_teacher_run),))
  train.run(config, tmp_path / "run")
  distilled = _read_params(tmp_path / "run", 6)
  for key, run in (("teacher/", teacher_run), ("teacher_1/", second_teacher_run)):
    _assert_same({k[len(key):]: v for k, v in distilled.items() if k.startswith(key)},
                 _read_params(run, 6))
  assert not np.array_equal(distilled["teacher/head/kernel"], distilled["teacher_1/head/kernel"])


@pytest.mark.slow
def test_the_student_learns_the_teachers_mean_softened_prediction(make_distill_config):
  import jax
  import optax
  from flax import nnx
  from mll_jax.data import sources
  from mll_jax.tasks import distill
  config = make_distill_config(init_from="a", teacher_ensemble=("b", "c"),
                               distill_temperature=2.0)
  info = sources.DatasetInfo("animal_mnist", tuple("abcdefghij"), (28, 28, 1), {})
  model = distill.make_model(config, info, nnx.Rngs(0))
  assert [type(t).__name__ for t in model.teachers()] == ["Classifier"] * 3
  # Heads start near 0 (uniform predictions, the same loss for any target): make them differ.
  for i, classifier in enumerate([model.student, *model.teachers()]):
    kernel = classifier.head.kernel
    kernel.value = jax.random.normal(jax.random.key(10 + i), kernel.value.shape)
  images = jax.random.randint(jax.random.key(1), (4, 28, 28, 1), 0, 255).astype("uint8")
  value, metrics = distill.loss(model, {"image": images}, jax.random.key(2), config)
  student, _ = model.student(images, jax.random.key(2))
  mean = np.mean([jax.nn.softmax(t(images)[0] / 2.0) for t in model.teachers()], axis=0)
  expected = optax.softmax_cross_entropy(student / 2.0, mean).mean()
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  # Not the first teacher's alone: the teachers differ.
  alone = optax.softmax_cross_entropy(
      student / 2.0, jax.nn.softmax(model.teacher(images)[0] / 2.0)).mean()
  assert abs(float(alone) - float(expected)) > 1e-4


@pytest.mark.parametrize("overrides, message", [
    ({"teacher_ensemble": ("runs/b", "")}, "expected a tuple of training-run folders"),
    ({"teacher_ensemble": ("runs/b",), "optim.freeze": ("^teacher/",)},
     "leaves the teacher\\(s\\) teacher_1 trainable"),
])
def test_a_bad_teacher_ensemble_is_refused(overrides, message, make_distill_config, tmp_path):
  with pytest.raises(ValueError, match=message):
    train.run(make_distill_config(init_from="runs/a", **overrides), tmp_path / "run")
  assert not (tmp_path / "run").exists()
