"""experiments/chco_confusion.py's pair table (hub_experts.pair_experts): which pairs of a task's classes some expert holds both of."""

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
