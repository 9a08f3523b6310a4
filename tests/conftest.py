"""Test setup: 8 fake CPU devices (before JAX starts), the persistent compilation cache, and a
private TFDS data folder in which the offline data sets are prepared once per session.

No test can reach a download: TFDS's GCS access is switched off and every data set used here is
one of the offline builders, prepared from files on this machine.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
TEST_CACHE = os.path.expanduser(os.environ.get("MLL_JAX_TEST_CACHE", "~/.cache/mll_jax/test_jax_cache"))
jax.config.update("jax_compilation_cache_dir", TEST_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

tfds.core.utils.gcs_utils._is_gcs_disabled = True  # never ask GCS for dataset metadata

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data folder private to this test session, with animal_mnist and digits prepared."""
  from mll_jax.data import sources
  path = str(tmp_path_factory.mktemp("tfds_data"))
  for name in ("animal_mnist", "digits"):
    sources.get_builder(name, data_dir=path)
  return path


@pytest.fixture(scope="session")
def subprocess_env(data_dir) -> dict:
  """Environment for `python -m mll_jax...` subprocesses: one CPU device, the test data."""
  env = dict(os.environ)
  env.update(TFDS_DATA_DIR=data_dir, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)
  return env


def load_config(file: str, arg: str | None, data_dir: str, overrides: dict):
  """`configs/<file>:<arg>` with test-sized data paths and dotted-key `overrides` applied."""
  import configs
  config = configs.get_config(file, arg)
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


SMALL_RUN = {"batch_size": 16, "total_steps": 6, "warmup_steps": 2, "log_steps": 2,
             "checkpoint.every_steps": 3}


def small_mae_config(data_dir: str, **overrides):
  """The `mu` MAE on animal_mnist with tiny evals: compiles in seconds."""
  return load_config("mae", "mu", data_dir, {
      **SMALL_RUN, "evals.reconstruction.num_examples": 32, "evals.reconstruction.batch_size": 16,
      "evals.fewshot.num_train_examples": 200, "evals.fewshot.num_test_examples": 64,
      "evals.fewshot.shots": (2,), "evals.fewshot.seeds": 1, "evals.fewshot.batch_size": 32,
      **overrides})


def small_classifier_config(file: str, data_dir: str, arg: str = "mu", **overrides):
  """`configs/<file>.py:<arg>` (a classifier task, the `mu` ViT by default) with a short run and
  a small evaluation."""
  return load_config(file, arg, data_dir, {
      **SMALL_RUN, "evals.classification.num_examples": 64,
      "evals.classification.batch_size": 32, **overrides})


def small_finetune_config(data_dir: str, **overrides):
  """The `mu` classifier on 10% of animal_mnist: compiles in seconds."""
  return small_classifier_config("finetune", data_dir, **overrides)


@pytest.fixture
def make_config(data_dir):
  """Factory: `make_config(**{"optim.base_lr": 1e-3})` -> a small MAE ConfigDict."""
  return lambda **overrides: small_mae_config(data_dir, **overrides)


@pytest.fixture
def make_finetune_config(data_dir):
  """Factory for a small supervised (fine-tuning) ConfigDict."""
  return lambda **overrides: small_finetune_config(data_dir, **overrides)


@pytest.fixture
def make_probe_config(data_dir):
  """Factory for a small linear-probe ConfigDict."""
  return lambda **overrides: small_classifier_config("linear_probe", data_dir, **overrides)


@pytest.fixture
def make_simclr_config(data_dir):
  """Factory for a small SimCLR ConfigDict (`arg`: the config's model arg, e.g. a CNN trunk)."""
  return lambda arg="mu", **overrides: load_config("simclr", arg, data_dir, {
      **SMALL_RUN, "evals.fewshot.num_train_examples": 200, "evals.fewshot.num_test_examples": 64,
      "evals.fewshot.shots": (2,), "evals.fewshot.seeds": 1, "evals.fewshot.batch_size": 32,
      **overrides})


@pytest.fixture
def make_distill_config(data_dir):
  """Factory for a small distillation ConfigDict (student mu, teacher mu)."""
  return lambda **overrides: load_config("distill", "mu,teacher=mu", data_dir, {
      **SMALL_RUN, "evals.classification.num_examples": 64,
      "evals.classification.batch_size": 32, **overrides})


@pytest.fixture
def make_expert_config(data_dir):
  """Factory for a small expert ConfigDict (mu, animal_mnist's cat, dog and horse)."""
  return lambda **overrides: small_classifier_config("expert", data_dir, **{
      "classes": "cat,dog,horse", "evals.classification.num_examples": 0, **overrides})


def assert_is_a_plot(path) -> None:
  """`path` is a PNG with something drawn on it: a figure's size, and lines in several colours
  (a blank or one-colour image fails)."""
  import numpy as np
  from PIL import Image
  with Image.open(path) as image:
    assert image.format == "PNG" and image.width >= 300 and image.height >= 200, image
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
  assert len(np.unique(pixels, axis=0)) > 8, f"{path}: a nearly blank image"


def pytest_collection_modifyitems(items):
  """An integration or study test is slow too, so `-m "not slow"` leaves every one out."""
  for item in items:
    if item.get_closest_marker("integration") or item.get_closest_marker("study"):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def buckets(tmp_path_factory):
  """Local GCS and S3 servers for this session (`object_storage.py`): yields the variables that
  reach them, which are also set in this process while the session lasts."""
  import object_storage
  with object_storage.servers(str(tmp_path_factory.mktemp("buckets"))) as env:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
      yield env
    finally:
      for key, value in saved.items():
        if value is None:
          os.environ.pop(key, None)
        else:
          os.environ[key] = value
