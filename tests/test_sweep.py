"""Sweeps: grid x zip, failures isolated, reruns skip finished points, tables, bad keys."""

import csv

import pytest

import configs
from mll_jax import config_files, sweep, train
from conftest import REPO_ROOT


def test_points_are_grid_times_zip():
  pts = sweep.points({"grid": {"a": [1, 2], "b": ["x"]}, "zip": {"c": [0, 1], "d": [5, 6]}})
  assert pts == [{"a": 1, "b": "x", "c": 0, "d": 5}, {"a": 1, "b": "x", "c": 1, "d": 6},
                 {"a": 2, "b": "x", "c": 0, "d": 5}, {"a": 2, "b": "x", "c": 1, "d": 6}]
  with pytest.raises(sweep.SweepError, match="same length"):
    sweep.points({"zip": {"c": [0, 1], "d": [5]}})


@pytest.mark.slow
def test_failed_point_is_reported_others_run_and_rerun_skips(make_config, tmp_path):
  config = make_config(total_steps=2, warmup_steps=1, **{"checkpoint.every_steps": 2})
  spec = {"grid": {"data.image_size": [28, 30], "seed": [0, 1]},
          "metrics": ["reconstruction/loss", "fewshot/2shot"]}
  calls = []

  def counting_run(cfg, workdir):
    calls.append(workdir.name)
    return train.run(cfg, workdir)

  rows = sweep.run_sweep(config, spec, tmp_path / "sweep", run_fn=counting_run)
  statuses = [r["status"] for r in rows]
  assert [s.startswith("failed") for s in statuses] == [False, False, True, True]
  assert "not divisible by the patch size" in statuses[2]
  assert all(isinstance(r["reconstruction/loss"], float) for r in rows[:2])
  table = list(csv.DictReader((tmp_path / "sweep" / "results.csv").open()))
  assert len(table) == 4 and table[0]["data.image_size"] == "28"
  assert "| point |" in (tmp_path / "sweep" / "results.md").read_text()

  calls.clear()
  rows = sweep.run_sweep(config, spec, tmp_path / "sweep", run_fn=counting_run)
  assert len(calls) == 2  # only the failed points run again
  assert [r["status"] for r in rows[:2]] == ["done (skipped)"] * 2


def test_unknown_key_fails_before_any_point_runs(make_config, tmp_path):
  calls = []
  with pytest.raises(sweep.SweepError, match="'optim.learning_rat'"):
    sweep.run_sweep(make_config(), {"grid": {"seed": [0], "optim.learning_rat": [1.0]}},
                    tmp_path / "sweep", run_fn=lambda c, w: calls.append(w))
  assert not calls and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "experiments" / "sweeps").glob("*.py")),
                         ids=lambda p: p.name)
def test_committed_sweep_files_fit_their_configs(path):
  base = {"mae_": "mae.py", "finetune_": "finetune.py", "linear_probe_": "linear_probe.py",
          "expert_": "expert.py"}
  config_name = next(v for k, v in base.items() if path.name.startswith(k))
  config = configs.get_config(config_name.removesuffix(".py"))
  spec = config_files.load(path).get_sweep()
  for overrides in sweep.points(spec):
    sweep.apply_overrides(config, overrides)


def test_preemption_stops_the_whole_sweep(make_config, tmp_path):
  calls = []

  def preempted_run(cfg, workdir):
    calls.append(workdir)
    raise train.Preempted("SIGTERM")

  with pytest.raises(train.Preempted):
    sweep.run_sweep(make_config(), {"grid": {"seed": [0, 1]}}, tmp_path / "sweep",
                    run_fn=preempted_run)
  assert len(calls) == 1
