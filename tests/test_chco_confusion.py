"""experiments/chco_confusion.py: its pair table (hub_experts.pair_experts) and its
references (hub_scaling_report.task_references)."""

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from experiments import hub_experts  # noqa: E402


def test_pairs_no_expert_holds_are_named_and_held_pairs_list_their_experts():
  pairs = hub_experts.pair_experts(("3", "4", "6", "9"), hub_experts.DIGIT_EXPERTS)
  assert pairs[("4", "9")] == [] and pairs[("3", "6")] == [] and pairs[("6", "9")] == []
  assert pairs[("3", "4")] == ["digits_234"] and pairs[("3", "9")] == ["digits_odd"]
  assert pairs[("4", "6")] == ["digits_456"]
  assert len(pairs) == 6


def test_the_references_of_a_task_come_from_the_hub_scaling_json(tmp_path):
  import json
  from experiments import hub_scaling_report
  study = tmp_path / "hub_scaling.json"
  assert "No references" in hub_scaling_report.task_references(study, "4,9")[0]
  study.write_text(json.dumps({"baselines": [
      {"method": "oracle", "task": "4,9", "accuracy": 0.99},
      {"method": "knn_pixels", "task": "4,9", "accuracy": 0.98},
      {"method": "oracle", "task": "1,2", "accuracy": 0.5}]}))
  line = hub_scaling_report.task_references(study, "4,9")[0]
  assert "oracle 0.990, knn_pixels 0.980;" in line and "0.500" not in line
