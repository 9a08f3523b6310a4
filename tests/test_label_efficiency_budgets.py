"""The label-efficiency study gives every run the budget its config sizes for the run's label
fraction (a `data.labels` override after the fact would keep the config's 10% budget)."""

import pathlib
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from experiments import label_efficiency  # noqa: E402
from mll_jax import config_files  # noqa: E402

finetune = config_files.load(pathlib.Path(REPO_ROOT) / "configs" / "finetune.py")
SETTINGS = {"quick": False, "model": "mini", "data": "animal_mnist", "validation": 0.1,
            "manual_dir": ""}
PRETRAINED = {"mae": "runs/mae", "simclr": "runs/simclr"}


@pytest.mark.parametrize("fraction", ["1%", "10%", "100%"])
@pytest.mark.parametrize("method,pretrained", [("scratch", False), ("mae_finetune", True),
                                               ("mae_probe", True)])
def test_each_run_gets_its_fractions_budget(method, pretrained, fraction):
  config = label_efficiency._adaptation_config(method, fraction, 0, PRETRAINED, SETTINGS)
  assert config.data.labels == fraction
  assert config.num_epochs == finetune.budget_epochs("animal_mnist", fraction, pretrained)
  assert config.data.validation == 0.1
