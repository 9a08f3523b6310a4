"""A study reuses (or resumes) a run only when it was trained with the config the study builds
now; a run of another config stops the study with the keys that differ, and is left as it is."""

import json
import pathlib

import ml_collections
import pytest


from experiments import finished_runs
import configs
from mll_jax import sweep, train
from mll_jax.models import precision


def _config():
  return configs.get_config("finetune", 
      "cnn_s,animal_mnist,labels=10%")


def _finished_run(workdir: pathlib.Path, config) -> dict:
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(train.config_json(config), indent=2))
  result = {"test": 0.9}
  (workdir / "result.json").write_text(json.dumps(result))
  return result


def test_changed_keys_are_dotted_with_old_and_new_values():
  saved = {"optim": {"base_lr": 0.004, "b1": 0.9}, "num_epochs": 150.0, "gone": 1}
  current = {"optim": {"base_lr": 0.002, "b1": 0.9}, "num_epochs": 150.0, "new": [1, 2]}
  assert finished_runs.changed_keys(saved, current) == [
      "gone: 1 -> '<absent>'", "new: '<absent>' -> [1, 2]", "optim.base_lr: 0.004 -> 0.002"]


def test_a_run_of_the_same_config_is_reused(tmp_path):
  config = _config()
  result = _finished_run(tmp_path / "run", config)
  # Loaded afresh (tuples, as the config file builds them) it still matches the saved JSON.
  assert finished_runs.finished_result(tmp_path / "run", _config()) == result


def test_a_run_of_another_recipe_is_refused_and_kept(tmp_path):
  _finished_run(tmp_path / "run", _config())
  changed = sweep.apply_overrides(_config(), {"num_epochs": 60.0, "optim.layer_decay": 0.75})
  with pytest.raises(finished_runs.StaleRunError) as error:
    finished_runs.finished_result(tmp_path / "run", changed)
  message = str(error.value)
  assert "num_epochs: 150.0 -> 60.0" in message and "optim.layer_decay: 1.0 -> 0.75" in message
  assert "delete that folder" in message
  assert (tmp_path / "run" / "result.json").exists()  # nothing lost


def test_an_unfinished_run_resumes_only_with_its_config(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(train.config_json(_config())))
  assert finished_runs.finished_result(workdir, _config()) is None  # to resume
  with pytest.raises(finished_runs.StaleRunError, match="seed: 0 -> 1"):
    finished_runs.finished_result(workdir, sweep.apply_overrides(_config(), {"seed": 1}))
  assert finished_runs.finished_result(tmp_path / "new", _config()) is None  # to start


def test_a_stale_run_stops_a_script_with_one_line():
  with pytest.raises(SystemExit) as stop:
    with finished_runs.stale_runs_stop("study.py"):
      raise finished_runs.StaleRunError("runs/x holds a run of another config")
  assert str(stop.value.code) == "study.py: runs/x holds a run of another config"


def test_a_run_of_the_former_float32_default_is_not_taken_for_one_of_auto(tmp_path):
  # Runs save "auto" resolved for their backend: one saved as "auto" meant float32 on CPU before
  # bfloat16_matmul became the CPU default, so it must not pass for a run of today's "auto".
  config = _config()
  assert config.model.dtype == "auto"
  assert train.config_json(config)["model"]["dtype"] == precision.dtype_name("auto")
  explicit = sweep.apply_overrides(_config(), {"model.dtype": "float32"})
  assert train.config_json(explicit)["model"]["dtype"] == "float32"
  distill = ml_collections.ConfigDict({"model": {"dtype": "bfloat16"}, "teacher": {"dtype": "auto"}})
  assert train.config_json(distill) == {"model": {"dtype": "bfloat16"},
                                        "teacher": {"dtype": precision.dtype_name("auto")}}
  workdir = tmp_path / "run"
  workdir.mkdir()
  saved = train.config_json(config)
  saved["model"]["dtype"] = "auto"  # as runs saved it before
  (workdir / "config.json").write_text(json.dumps(saved))
  with pytest.raises(finished_runs.StaleRunError,
                     match=f"model.dtype: 'auto' -> '{precision.dtype_name('auto')}'"):
    finished_runs.finished_result(workdir, config)
