"""The hub studies' reports: each expert's accuracy against its target beside its curve, and
CHCO's gap to the oracle and the generalist per data set."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from experiments import hub_build_report, hub_scaling_report


def _run(test: float, curve=((0, 0.3), (50, 0.9), (100, 0.95))) -> dict:
  return {"test": test, "test_images": 600, "validation": curve[-1][1], "curve": list(curve),
          "steps": curve[-1][0]}


def test_expert_rows_say_which_targets_are_met():
  runs = {"digits_012": ("mnist", "0,1,2", "mini", _run(0.995)),
          "digits_odd": ("mnist", "1,3,5,7,9", "mini", _run(0.981)),
          "pets": ("animal_mnist", "cat,dog,bird", "mini", _run(0.94))}
  lines = hub_build_report.expert_lines(runs)
  assert "| digits_012 | mnist | mini | 0,1,2 | 0.995 (met) | - | 0.99 |" in lines[2]
  assert "0.981 (missed)" in lines[3]
  assert "0.950 at step 100, best 0.950" in lines[4]
  summary = hub_build_report.target_summary(runs)
  assert summary == [
      "- mnist: 1 of 2 experts reach the 0.99 target on their own classes (mean 0.988, "
      "lowest 0.981).",
      "- animal_mnist: 1 of 1 experts reach the 0.93 target on their own classes (mean 0.940, "
      "lowest 0.940)."]


def test_the_build_report_names_each_data_sets_pairs_no_expert_holds():
  runs = {"a": ("mnist", "0,1,2", "mini", _run(0.99)), "b": ("mnist", "2,3", "mini", _run(0.99)),
          "pets": ("animal_mnist", "cat,dog", "mini", _run(0.94))}
  assert hub_build_report.coverage_lines(runs) == [
      "- mnist: pairs of its classes that no expert holds: 0-3, 1-3.",
      "- animal_mnist: pairs of its classes that no expert holds: none."]


def test_the_paired_test_counts_discordant_images_and_resolves_only_clear_gaps():
  import numpy as np
  right_run = np.array([True] * 90 + [False] * 10)
  right_knn = np.array([True] * 86 + [False] * 4 + [True] * 8 + [False] * 2)
  result = hub_build_report.paired_test(right_run, right_knn)
  assert (result["a_only"], result["b_only"]) == (4, 8)
  assert result["p"] == pytest.approx(0.388, abs=1e-3)  # 2 * P(Binomial(12, 1/2) <= 4)
  assert hub_build_report.verdict(result, "1-NN") == "below 1-NN (not significant)"
  clear = hub_build_report.paired_test(np.arange(100) < 90, np.arange(100) < 70)
  assert (clear["a_only"], clear["b_only"]) == (20, 0) and clear["p"] < 1e-5
  assert hub_build_report.verdict(clear, "the CNN") == "above the CNN (significant)"
  same = hub_build_report.paired_test(right_run, right_run)
  assert same["p"] == 1.0 and hub_build_report.verdict(same, "1-NN") == "level"
  measured = {"run": 0.9, "knn": 0.94, "images": 100, "vs_knn": result}
  rows = hub_build_report.baselines_table({
      "farm": ("animal_mnist", "cow,sheep,horse", measured, None),
      "generalist": ("mnist", "", {**measured, "cnn": 0.8, "vs_cnn": clear}, [(0, 0.5), (9, 0.9)])})
  assert rows[2] == ("| farm | animal_mnist | cow,sheep,horse | 100 | 0.900 | 0.940 | - | "
                     "4 / 8, p = 0.388: below 1-NN (not significant) | - | - |")
  assert "| 0.800 | 4 / 8, p = 0.388" in rows[3]
  assert "20 / 0, p = 0.000: above the CNN (significant) | 0.900 at step 9" in rows[3]


def test_a_finished_run_is_read_from_its_metrics(tmp_path):
  lines = [{"step": 0, "validation/accuracy": 0.1, "classification/accuracy": 0.1},
           {"step": 10, "loss": 1.0},
           {"step": 20, "validation/accuracy": 0.8, "classification/accuracy": 0.75,
            "classification/examples": 300}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)))
  run = hub_build_report.trained_run(tmp_path)
  assert run == {"test": 0.75, "test_images": 300, "validation": 0.8,
                 "curve": [(0, 0.1), (20, 0.8)], "steps": 20}


def _baseline(method, task, accuracy):
  return {"method": method, "task": task, "accuracy": accuracy, "models": 1, "mflops": 1.0}


def test_per_data_set_gaps_of_chco_to_the_oracle_and_the_generalist():
  results = {"tasks": [["animal_mnist", ["cat", "cow", "dog"]],
                       ["animal_mnist", ["bear", "zebra", "cat"]], ["mnist", ["1", "2", "7"]]],
             "baselines": [_baseline("chco", "cat,cow,dog", 0.8),
                           _baseline("chco", "bear,zebra,cat", 0.9),
                           _baseline("chco", "1,2,7", 0.95),
                           _baseline("oracle", "cat,cow,dog", 0.9),
                           _baseline("oracle", "bear,zebra,cat", 0.9),
                           _baseline("oracle", "1,2,7", 0.99),
                           _baseline("generalist", "cat,cow,dog", 0.7),
                           _baseline("generalist", "bear,zebra,cat", 0.8),
                           _baseline("generalist", "1,2,7", 0.97)]}
  lines = hub_scaling_report.per_dataset_lines(results)
  assert lines[0] == ("| data set | chco | oracle | generalist | CHCO − oracle | "
                      "CHCO − generalist | ")
  assert lines[2] == "| animal_mnist | 0.850 | 0.900 | 0.750 | -0.050 | +0.100 | "
  assert lines[3] == "| mnist | 0.950 | 0.990 | 0.970 | -0.040 | -0.020 | "


@pytest.mark.parametrize("trained", [{}, {"oracle_mnist_1-2-7": {
    "data": "mnist", "classes": "1,2,7", **_run(0.99)}}])
def test_trained_references_are_listed_with_their_curves_when_there_are_any(trained, tmp_path):
  lines = hub_scaling_report.trained_lines(trained)
  curves_png = tmp_path / "hub_scaling_curves.png"
  hub_scaling_report.plot_trained_curves(trained, curves_png)
  if not trained:
    assert lines == [] and not curves_png.exists()
  else:
    assert any(line.startswith("| oracle_mnist_1-2-7 | mnist | 1,2,7 | 0.990 | 100 | 0.950 at")
               for line in lines)
    assert curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("data,model,epochs", [("mnist", "mini", 6.0),
                                               ("animal_mnist", "mini", 20.0),
                                               ("animal_mnist", "cnn_s", 15.0),
                                               ("animal_mnist", "tiny", 40.0),
                                               # From scratch on MNIST: its own recipe's 6
                                               # passes, not animal_mnist's 40.
                                               ("mnist", "tiny", 6.0)])
def test_experts_train_for_the_hubs_own_budget(data, model, epochs, tmp_path):
  # The hub's budgets stay as the committed build ran them, whatever the fine-tuning recipe's
  # table (configs/finetune.py) is later cut to; the step floor applies to every expert.
  from experiments import hub_experts
  config = hub_experts.expert_config(tmp_path, data, "0,1,2", quick=False,
                                     mnist_dir="/nowhere", model=model)
  assert config.num_epochs == epochs and config.min_steps == hub_experts.MIN_STEPS
  assert config.evals.validation.split == "holdout"
  assert bool(config.init_from) == (model == "mini")


@pytest.mark.parametrize("data,encoder,name,epochs", [("animal_mnist", "mae", "animal_mnist", 15.0),
                                                      ("mnist", "mae_mnist", "idx/mnist", 5.0)])
def test_each_data_sets_experts_start_from_its_own_encoder(data, encoder, name, epochs,
                                                           tmp_path):
  # Digit experts fine-tuned from an encoder pre-trained on animals lost to 1-NN on pixels.
  from experiments import hub_experts
  config = hub_experts.encoder_config(data, quick=False, mnist_dir="/nowhere")
  assert (config.data.name, config.num_epochs, config.model.variant) == (name, epochs, "mini")
  assert config.data.manual_dir == ("/nowhere" if data == "mnist" else "")
  expert = hub_experts.expert_config(tmp_path, data, "0,1,2", quick=False, mnist_dir="/nowhere")
  assert expert.init_from == str(tmp_path / encoder)
  assert hub_experts.encoder_dir(tmp_path, data) == tmp_path / encoder


def _study(tasks: list, chco_by_task: dict, mflops: float) -> dict:
  """A hub_scaling.json of `tasks` whose CHCO reaches `chco_by_task` at every lambda and size."""
  keys = [",".join(c) for _, c in tasks]
  return {"tasks": tasks,
          "lambda": [{"lam": lam, "task": t, "accuracy": chco_by_task[t], "models": 2,
                      "mflops": mflops} for lam in (0.0, 0.1) for t in keys],
          "scaling": [{"method": "chco", "size": size, "ordering": 0, "task": t,
                       "accuracy": chco_by_task[t] - (0.1 if size == 2 else 0.0)}
                      for size in (2, 4) for t in keys]}


def test_a_hub_is_compared_with_another_on_the_same_tasks_paired_by_task():
  tasks = [["animal_mnist", ["cat", "cow", "dog"]], ["mnist", ["1", "2", "7"]]]
  mixed = _study(tasks, {"cat,cow,dog": 0.9, "1,2,7": 0.8}, mflops=300.0)
  vit_only = _study(tasks, {"cat,cow,dog": 0.8, "1,2,7": 0.9}, mflops=100.0)
  # A study compares its own tasks as drawn (tuples of numpy strings) with the other's as saved.
  mixed["tasks"] = [[d, tuple(np.str_(c) for c in classes)] for d, classes in tasks]
  lines = hub_scaling_report.comparison_lines(mixed, vit_only, "hub_scaling.json")
  # Means are equal, but each task moved by 0.1 one way or the other: the paired spread shows it.
  assert "| 0 | 0.850 ± 0.050 | 0.850 ± 0.050 | 0.000 ± 0.100 | 300.000 ± 0.000 | " \
         "100.000 ± 0.000 |" in lines
  assert "| this hub | 0.750 | 0.850 |" in lines
  assert "| hub_scaling.json | 0.750 | 0.850 |" in lines


def test_hubs_measured_on_other_tasks_are_not_compared():
  mixed = _study([["mnist", ["1", "2", "7"]]], {"1,2,7": 0.8}, 1.0)
  other = _study([["mnist", ["1", "2", "8"]]], {"1,2,8": 0.8}, 1.0)
  with pytest.raises(ValueError, match="other tasks"):
    hub_scaling_report.comparison_lines(mixed, other, "other.json")


@pytest.mark.slow
@pytest.mark.integration
def test_a_comparison_with_a_study_of_other_tasks_is_refused_before_the_study_runs(
    tmp_path, subprocess_env):
  # In a process of its own: experiments/hub_scaling.py defines absl flags that other
  # experiment modules imported by the test session define too.
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"tasks": [["animal_mnist", ["bear", "cat", "dog"]]]}))
  proc = subprocess.run([sys.executable, "-m", "experiments.hub_scaling", f"--compare_to={other}",
                         f"--hub_dir={tmp_path / 'no_hub'}", f"--out={tmp_path / 'out'}"],
                        cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  assert "was run on other tasks" in proc.stderr and "--seed, --tasks" in proc.stderr
  assert not (tmp_path / "out").exists()  # refused before the hub is opened or anything written
