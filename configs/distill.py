"""Distillation with the unlabelled rest (SimCLRv2 step 3): a `mini` student learns from a
fine-tuned `tiny` teacher on every training image of animal_mnist.

    python -m mll_jax.train --config=configs/distill.py --config.init_from=runs/supervised-XXXX

Args as configs/finetune.py (the model arg sets the student), plus `teacher=<model>`.
"""

import ml_collections

from configs import common, finetune

MODELS, DATA = finetune.MODELS, finetune.DATA


def get_config(arg=None):
  """Distillation config; the teacher's architecture must match its checkpoint."""
  tokens = common.tokens(arg)
  teacher = next((t.split("=", 1)[1] for t in tokens if t.startswith("teacher=")), "tiny")
  student_args = [t for t in tokens if not t.startswith("teacher=")]
  if not any(t in MODELS for t in student_args):
    student_args.append("mini")
  c = finetune.get_config(",".join(student_args))
  # Distillation reads every training image, labelled or not, so its batch is not the one a
  # label fraction sizes (the 1% recipe's 64 fits its 70 labelled images): the batch of all
  # labels, as the label-efficiency study has always run.
  model, data, _ = finetune.parse_arg(",".join(student_args))
  c.batch_size = finetune.batch_size(model, data, "100%")
  if teacher not in MODELS:
    raise ValueError(f"configs/distill.py: unknown teacher {teacher!r}; models: "
                     f"{', '.join(MODELS)}.")
  c.task = "distill"
  data = c.data.name.split("/")[-1]
  c.teacher = finetune.model_config(teacher, data)
  if c.teacher.family == "vit":
    # For a linear-probe teacher: head_norm="batchnorm" (its BatchNorm statistics load too),
    # and the probe's read-out (configs/linear_probe.py `pooled_read_out`: pool, read_blocks).
    c.teacher.update(drop_path=0.0, head_norm="", read_blocks=1)
  c.data.unlabelled = True  # every training image; labels only where data.labels keeps them
  c.distill_temperature = 1.0  # SimCLRv2: tau = 1 works
  c.labelled_weight = 0.0      # > 0 mixes in cross-entropy on the labelled images
  c.label_smoothing = 0.0
  if c.model.family == "vit":
    c.model.drop_path = 0.0
  # Passes over every training image (the unlabelled ones too): MNIST has 7.5x the images; on
  # animal_mnist the student's validation curve is flat before 10.
  c.num_epochs = 3.0 if c.data.name == "idx/mnist" else 10.0
  if c.data.name == "idx/mnist":
    # The fine-tuning recipe's warm-up is 5 passes over a labelled subset; over every MNIST
    # image it would outlast the 3-pass run. Half a pass, as the MNIST recipe probe used.
    c.warmup_epochs = 0.5
  c.budget_sized_for = dict(labels=None, num_epochs=c.num_epochs)  # not sized by the labels
  c.optim.update(layer_decay=1.0, freeze=("^teacher",))  # teacher, teacher_1, ...
  c.init_from = ""             # the teacher's training run (required)
  c.teacher_ensemble = ()      # more teachers' runs: the student learns their mean prediction
  c.student_init_from = ""     # optional: a pre-training run whose encoder starts the student
  del c.init_fresh             # the task lists its own init sources
  return ml_collections.ConfigDict(c)
