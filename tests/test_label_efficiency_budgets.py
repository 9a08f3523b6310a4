"""The label-efficiency study gives every run the budget its config sizes for the run's label
fraction (a `data.labels` override after the fact would keep the config's 10% budget)."""


import pytest


from experiments import label_efficiency

from configs import finetune, linear_probe
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


def test_the_token_probe_reads_every_patch_token_as_run_and_as_teacher(tmp_path):
  probe = label_efficiency._adaptation_config("mae_token_probe", "10%", 0, PRETRAINED, SETTINGS)
  assert probe.model.pool == "tokens" and probe.model.frozen_trunk
  # ... with that read-out's weight decay (recipe_probe_token_wd_and_1pct.md); the pooled
  # probe none.
  chosen = linear_probe.token_weight_decay("animal_mnist", "mini", "10%")
  assert probe.optim.weight_decay == chosen > 0
  pooled = label_efficiency._adaptation_config("mae_probe", "10%", 0, PRETRAINED, SETTINGS)
  assert (pooled.model.pool, pooled.model.read_blocks) == ("cls", 4)
  assert pooled.optim.weight_decay == 0
  teacher = label_efficiency._distill_config("mae_token_probe", "10%", 0, tmp_path, PRETRAINED,
                                             SETTINGS).teacher
  assert teacher.pool == "tokens" and teacher.head_norm == "batchnorm"
  # The pooled probe as teacher reads what it read as a run: the last 4 blocks' cls tokens.
  pooled_teacher = label_efficiency._distill_config("mae_probe", "10%", 0, tmp_path, PRETRAINED,
                                                    SETTINGS).teacher
  assert (pooled_teacher.pool, pooled_teacher.read_blocks, pooled_teacher.head_norm) == (
      pooled.model.pool, pooled.model.read_blocks, "batchnorm") == ("cls", 4, "batchnorm")
  assert label_efficiency._distill_config("mae_finetune", "10%", 0, tmp_path, PRETRAINED,
                                          SETTINGS).teacher.pool == "gap"


@pytest.mark.parametrize("model", ["mini", "cnn_s"])
def test_simclrv2s_fine_tune_keeps_the_first_projection_layer_as_run_and_as_teacher(model,
                                                                                 tmp_path):
  settings = {**SETTINGS, "model": model}
  tuned = label_efficiency._adaptation_config("simclr_proj_finetune", "1%", 0, PRETRAINED,
                                              settings)
  assert tuned.model.projection_layers == 1 and tuned.init_from == "runs/simclr"
  assert label_efficiency._adaptation_config(
      "simclr_finetune", "1%", 0, PRETRAINED, settings).model.projection_layers == 0
  distill = label_efficiency._distill_config("simclr_proj_finetune", "1%", 0, tmp_path,
                                             PRETRAINED, settings)
  assert distill.teacher.projection_layers == 1  # the teacher's checkpoint has that layer
  assert distill.model.projection_layers == 0    # the student is a plain classifier


def test_only_the_pre_training_the_methods_start_from_runs(tmp_path):
  # scratch starts from nothing: no pre-training is trained (or even configured).
  assert label_efficiency.pretrain(tmp_path, {**SETTINGS, "timings": {}}, ["scratch"]) == {}
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("model,family", [("mini", "vit"), ("cnn_s", "cnn")])
def test_the_distillation_teacher_is_the_studys_model(model, family, tmp_path):
  settings = {**SETTINGS, "model": model}
  config = label_efficiency._distill_config("simclr_finetune", "1%", 0, tmp_path, PRETRAINED,
                                            settings)
  assert (config.teacher.family, config.teacher.variant) == (family, config.model.variant)
  assert config.model.variant == ("mini" if model == "mini" else "cnn_s")


@pytest.mark.parametrize("model,quick,stand_in", [("cnn_s", True, "cnn_mu"),
                                                  ("mini", True, "mu"),
                                                  ("cnn_s", False, "cnn_s")])
def test_a_quick_study_keeps_its_models_family(model, quick, stand_in):
  settings = {**SETTINGS, "model": model, "quick": quick}
  config = label_efficiency._adaptation_config("scratch", "10%", 0, PRETRAINED, settings)
  assert config.model.variant == stand_in


def test_a_study_of_another_model_writes_files_of_its_own():
  from experiments import label_efficiency_report as report
  names = {report.study_suffix({**SETTINGS, "model": m, "data": d, "quick": False})
           for m in ("mini", "cnn_s") for d in ("animal_mnist", "mnist")}
  assert names == {"", "_cnn_s", "_mnist", "_mnist_cnn_s"}
  # The baselines are the data set's, whatever the model.
  assert report.data_suffix({**SETTINGS, "model": "cnn_s", "data": "mnist"}) == "_mnist"


@pytest.mark.parametrize("data", ["animal_mnist", "mnist"])
@pytest.mark.parametrize("model", ["mini", "cnn_s"])
def test_every_config_a_study_builds_passes_the_trainers_checks(data, model, tmp_path):
  # What the trainer refuses at the start of a run (a warm-up as long as the run, a value out
  # of range) must not first surface an hour into a study.
  from mll_jax import config_checks
  settings = {**SETTINGS, "model": model, "data": data,
              "manual_dir": "/mnist" if data == "mnist" else ""}
  methods = [m for m in label_efficiency.ADAPTATIONS
             if model == "mini" or label_efficiency.ADAPTATIONS[m][1] != "mae"]
  for fraction in ("1%", "10%", "100%"):
    for method in methods:
      config_checks.check(label_efficiency._adaptation_config(method, fraction, 0, PRETRAINED,
                                                              settings))
    for teacher in methods:
      config_checks.check(label_efficiency._distill_config(teacher, fraction, 0, tmp_path,
                                                           PRETRAINED, settings))
  for pretraining in ("mae", "simclr") if model == "mini" else ("simclr",):
    config_checks.check(label_efficiency._config(pretraining, settings))


def test_skipped_cells_are_checked_and_reported_as_not_run():
  from absl import app
  from experiments import label_efficiency_report as report
  methods, fractions = ["scratch", "mae_finetune"], ["10%", "100%"]
  assert label_efficiency.parse_skip(["scratch@100%"], methods, fractions) == {
      ("scratch", "100%")}
  for bad in ("scratch@50%", "simclr_finetune@100%", "scratch"):
    with pytest.raises(app.UsageError, match="METHOD@FRACTION"):
      label_efficiency.parse_skip([bad], methods, fractions)
  run = {"test": 0.9, "validation": 0.9}
  runs = {"scratch": {"10%": [run, run], "100%": []},
          "mae_finetune": {"10%": [run, run], "100%": [run, run]}}
  lines = report.claims(runs, {}, {})
  assert any("10%: pre-training + fine-tuning" in line for line in lines)
  assert "- 100%: pre-training helps — not tested: scratch was not run at 100% (--skip)." in lines


@pytest.mark.parametrize("data,epochs", [("animal_mnist", 40.0), ("mnist", 6.0)])
def test_a_student_of_another_architecture_starts_at_random_on_the_scratch_budget(
    data, epochs, tmp_path):
  from mll_jax import config_checks
  settings = {**SETTINGS, "model": "cnn_s", "data": data, "distill_student": "mini",
              "manual_dir": "/mnist" if data == "mnist" else ""}
  config = label_efficiency._distill_config("simclr_finetune", "1%", 1, tmp_path, PRETRAINED,
                                            settings)
  assert (config.teacher.family, config.teacher.variant) == ("cnn", "cnn_s")
  assert (config.model.family, config.model.variant) == ("vit", "mini")
  assert config.student_init_from == ""  # a CNN's SimCLR encoder cannot start a ViT
  assert config.init_from == str(tmp_path / "simclr_finetune_1pct_seed1")
  assert config.num_epochs == epochs == finetune.budget_epochs(data, "100%", False)
  config_checks.check(config)
  # Its runs and report are its own; the teachers' runs folder is shared.
  from experiments import label_efficiency_report as report
  assert label_efficiency.distill_run_name("1%", 1, settings) == "distill_mini_1pct_seed1"
  assert report.report_suffix(settings) == report.study_suffix(settings) + "_distill_mini"


def test_the_default_student_is_the_studys_model_and_starts_pre_trained(tmp_path):
  from experiments import label_efficiency_report as report
  settings = {**SETTINGS, "model": "cnn_s", "distill_student": None}
  config = label_efficiency._distill_config("simclr_finetune", "1%", 0, tmp_path, PRETRAINED,
                                            settings)
  assert config.student_init_from == "runs/simclr" and config.num_epochs == 10.0
  assert label_efficiency.distill_run_name("1%", 0, settings) == "distill_1pct_seed0"
  assert report.report_suffix(settings) == report.study_suffix(settings) == "_cnn_s"


def test_the_report_says_whether_fine_tuning_from_the_projection_layer_helps():
  from experiments import label_efficiency_report as report
  runs_of = lambda *tests: [{"test": t, "validation": t} for t in tests]
  runs = {"simclr_finetune": {"1%": runs_of(0.70, 0.72), "10%": runs_of(0.90, 0.90)},
          "simclr_proj_finetune": {"1%": runs_of(0.76, 0.78), "10%": runs_of(0.899, 0.901)}}
  lines = [line for line in report.claims(runs, {}, {}) if "projection head" in line]
  assert lines == [
      "- 1%: SimCLR fine-tuned from the projection head's first layer minus from the encoder "
      "= +0.060, seed spread 0.010: SimCLRv2's choice helps — holds.",
      "- 10%: SimCLR fine-tuned from the projection head's first layer minus from the encoder "
      "= +0.000, seed spread 0.001: SimCLRv2's choice helps — does NOT hold."]


def test_a_teacher_ensemble_is_fine_tuned_on_its_seeds_labels_and_reported_apart(tmp_path):
  from experiments import label_efficiency_report as report
  from mll_jax import config_checks
  settings = {**SETTINGS, "model": "cnn_s", "distill_student": "mini", "teacher_ensemble": 3}
  config = label_efficiency._distill_config("simclr_finetune", "1%", 1, tmp_path, PRETRAINED,
                                            settings)
  assert config.init_from == str(tmp_path / "simclr_finetune_1pct_seed1")
  assert config.teacher_ensemble == (str(tmp_path / "simclr_finetune_1pct_seed1_member1"),
                                     str(tmp_path / "simclr_finetune_1pct_seed1_member2"))
  config_checks.check(config)
  member = label_efficiency._member_config("simclr_finetune", "1%", 1, 2, PRETRAINED, settings)
  own = label_efficiency._adaptation_config("simclr_finetune", "1%", 1, PRETRAINED, settings)
  assert (member.seed, member.data.labels_seed) == (2001, 1)
  assert member.num_epochs == own.num_epochs and member.init_from == own.init_from
  assert label_efficiency.distill_run_name("1%", 1, settings) == "distill_mini_ensemble3_1pct_seed1"
  assert report.report_suffix(settings) == "_cnn_s_distill_mini_ensemble3"
  line = report.teachers_line({"1%": "simclr_finetune"}, {
      **settings, "ensemble_members": {"1%": [{"test": 0.7}, {"test": 0.8}]}})
  assert "1%: simclr_finetune (an ensemble of 3 fine-tunes per seed" in line
  assert "mean test accuracy 0.750" in line


def test_a_study_augmentation_reaches_every_adaptation_run_but_not_pre_training(tmp_path):
  from experiments import label_efficiency_report as report
  settings = {**SETTINGS, "model": "cnn_s", "augment": "shift+flip", "teacher_ensemble": 2}
  for method in ("scratch", "simclr_finetune"):
    assert label_efficiency._adaptation_config(method, "1%", 0, PRETRAINED,
                                               settings).data.augment == "shift+flip"
  assert label_efficiency._member_config("simclr_finetune", "1%", 0, 1, PRETRAINED,
                                         settings).data.augment == "shift+flip"
  assert label_efficiency._distill_config("simclr_finetune", "1%", 0, tmp_path, PRETRAINED,
                                          settings).data.augment == "shift+flip"
  simclr = label_efficiency._config("simclr", settings)
  assert simclr.data.augment == label_efficiency._config(
      "simclr", {**settings, "augment": ""}).data.augment != "shift+flip"
  assert report.study_suffix(settings) == "_cnn_s_aug-shift-flip"
  assert label_efficiency._config("finetune", {**settings, "augment": ""}, labels="100%",
                                  ).data.augment == "shift"


def test_a_study_dtype_reaches_every_run_teachers_included(tmp_path):
  from experiments import label_efficiency_report as report
  settings = {**SETTINGS, "dtype": "bfloat16_matmul", "teacher_ensemble": 2}
  configs = [label_efficiency._config(name, settings) for name in ("mae", "simclr")]
  configs.append(label_efficiency._adaptation_config("mae_probe", "10%", 0, PRETRAINED, settings))
  configs.append(label_efficiency._member_config("simclr_finetune", "1%", 0, 1, PRETRAINED,
                                                 settings))
  distill = label_efficiency._distill_config("simclr_finetune", "1%", 0, tmp_path, PRETRAINED,
                                             settings)
  assert [c.model.dtype for c in configs + [distill]] == ["bfloat16_matmul"] * 5
  assert distill.teacher.dtype == "bfloat16_matmul"
  assert label_efficiency._config("finetune", SETTINGS).model.dtype == "auto"
  assert report.study_suffix(settings) == "_bfloat16_matmul"
