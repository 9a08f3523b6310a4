"""experiments/chco_confusion.py: its pair table (hub_experts.pair_experts) and its
references (hub_scaling_report.task_references)."""



from experiments import hub_experts


# The digit experts of the hub built before 2026-12-04, whose pair 4-9 no expert held.
TRIPLES_AND_ODD = {"digits_012": "0,1,2", "digits_234": "2,3,4", "digits_456": "4,5,6",
                   "digits_678": "6,7,8", "digits_890": "8,9,0", "digits_odd": "1,3,5,7,9"}


def test_pairs_no_expert_holds_are_named_and_held_pairs_list_their_experts():
  pairs = hub_experts.pair_experts(("3", "4", "6", "9"), TRIPLES_AND_ODD)
  assert pairs[("4", "9")] == [] and pairs[("3", "6")] == [] and pairs[("6", "9")] == []
  assert pairs[("3", "4")] == ["digits_234"] and pairs[("3", "9")] == ["digits_odd"]
  assert pairs[("4", "6")] == ["digits_456"]
  assert len(pairs) == 6
  assert ("4", "9") in hub_experts.uncovered_pairs(TRIPLES_AND_ODD)
  assert len(hub_experts.uncovered_pairs(TRIPLES_AND_ODD)) == 20


def test_every_pair_of_each_data_sets_classes_is_held_by_an_expert_of_the_hub_design():
  for experts, classes in ((hub_experts.ANIMAL_EXPERTS, 10), (hub_experts.DIGIT_EXPERTS, 10)):
    held = {c for subset in experts.values() for c in subset.split(",")}
    assert len(held) == classes and hub_experts.uncovered_pairs(experts) == []
    assert max(len(subset.split(",")) for subset in experts.values()) <= 5


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
