"""Every task resumes exactly: a run whose last checkpoint is dropped resumes from the one
before and lands on the same parameters and model state (BatchNorm statistics), bit for bit."""

import shutil

import orbax.checkpoint as ocp
import pytest

from conftest import SMALL_RUN, load_config
from test_train import _assert_same, _flat

pytestmark = pytest.mark.slow

CLASSIFIER_EVAL = {"evals.classification.num_examples": 64, "evals.classification.batch_size": 32}
FEWSHOT_EVAL = {"evals.fewshot.num_train_examples": 200, "evals.fewshot.num_test_examples": 64,
                "evals.fewshot.shots": (2,), "evals.fewshot.seeds": 1,
                "evals.fewshot.batch_size": 32}
# config file, arg, overrides; "{mae}" is a short MAE run's workdir (the probe's trunk).
RUNS = {
    "finetune_vit": ("finetune", "mu", CLASSIFIER_EVAL),
    "finetune_cnn": ("finetune", "cnn_mu", CLASSIFIER_EVAL),
    "simclr": ("simclr", "mu", FEWSHOT_EVAL),
    "expert": ("expert", "mu", {"classes": "cat,dog,horse",
                                "evals.classification.num_examples": 0}),
    "linear_probe": ("linear_probe", "mu", {**CLASSIFIER_EVAL, "init_from": "{mae}"}),
}


def _read_state(workdir, step) -> dict:
  """A checkpoint's params and model state, flattened."""
  restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
  return {**_flat(restored["params"]),
          **{f"state/{k}": v for k, v in _flat(restored.get("model_state", {})).items()}}


@pytest.fixture(scope="module")
def mae_run(data_dir, tmp_path_factory):
  """A 3-step `mu` MAE run, the linear probe's frozen trunk."""
  from mll_jax import train
  workdir = tmp_path_factory.mktemp("mae")
  train.run(load_config("mae", "mu", data_dir, {
      **SMALL_RUN, **FEWSHOT_EVAL, "total_steps": 3, "evals.reconstruction.num_examples": 32,
      "evals.reconstruction.batch_size": 16}), workdir)
  return workdir


@pytest.mark.parametrize("name", RUNS)
def test_a_run_resumed_from_its_previous_checkpoint_ends_bitwise_equal(name, data_dir,
                                                                       mae_run, tmp_path):
  from mll_jax import train
  file, arg, overrides = RUNS[name]
  overrides = {k: v.format(mae=mae_run) if isinstance(v, str) else v
               for k, v in overrides.items()}
  config = lambda: load_config(file, arg, data_dir, {**SMALL_RUN, **overrides})
  workdir = tmp_path / name
  train.run(config(), workdir)
  final = _read_state(workdir, 6)
  shutil.rmtree(workdir / "checkpoints" / "6")
  train.run(config(), workdir)  # resumes from step 3
  _assert_same(_read_state(workdir, 6), final)
