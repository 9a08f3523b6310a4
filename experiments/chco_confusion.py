"""Where CHCO's reuse errs on one task: the confusion matrix of its predictions on the task's
test images, beside which pairs of the task's classes some expert was trained to tell apart.

    python -m experiments.chco_confusion --hub_dir=runs/hub --mnist_dir=DIR --task=mnist:3,4,6,9

CHCO combines heads; it cannot add a distinction that no expert learnt. A pair of target
classes that no single expert holds both of is only separated by experts that each saw one of
them, and must say "not mine" to the other, an image of a class they were never shown. This
prints, per pair of classes, the errors between them and the experts that hold both.
Writes `<out>/chco_confusion_<data>_<classes>.md`.
"""

import pathlib

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import hub_experts, hub_scaling, hub_scaling_report  # noqa: E402
from mll_jax import train  # noqa: E402
from mll_jax.hub import registry, reuse, selection  # noqa: E402

# --hub_dir, --mnist_dir, --lam, --max_test_images and --out are hub_scaling.py's flags (its
# import defines them), so this task is scored exactly as the study scores it.
_TASK = flags.DEFINE_string("task", "mnist:3,4,6,9", "DATA:CLASSES (comma-separated).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  train.setup_runtime()
  data, _, names = _TASK.value.partition(":")
  if data not in hub_scaling.DATA or not names:
    raise app.UsageError(f"--task={_TASK.value}: expected DATA:CLASSES with DATA one of "
                         f"{', '.join(hub_scaling.DATA)}, e.g. mnist:3,4,6,9.")
  classes = tuple(names.split(","))
  hub = registry.Hub(FLAGS.hub_dir, create=False)
  study = hub_scaling.Study(hub, FLAGS.mnist_dir, FLAGS.max_test_images)
  chosen = selection.select(hub, list(classes), models=study.models, lam=FLAGS.lam)
  images, labels = study.images(data, classes)
  predicted = reuse.build(chosen, hub).predict(images).argmax(-1)
  confusion = np.zeros((len(classes), len(classes)), int)
  np.add.at(confusion, (labels, predicted), 1)
  # The classes each expert of this hub holds, read from the hub (not hub_experts' current
  # design), so that a report on an older hub names that hub's experts.
  pairs = hub_experts.pair_experts(classes, {e.ref: ",".join(e.classes) for e in hub.entries()})
  lines = [f"# CHCO's confusion on {data}: {','.join(classes)}", "",
           f"Command: `python -m experiments.chco_confusion --task={_TASK.value} "
           f"--lam={FLAGS.lam}`; {len(labels)} test images (hub_scaling.py's subset), "
           f"accuracy {np.mean(predicted == labels):.3f}, {len(chosen.models)} models: "
           f"{', '.join(chosen.models)}.", "",
           *hub_scaling_report.task_references(pathlib.Path(FLAGS.out) / "hub_scaling.json",
                                               ",".join(classes)),
           "Rows: true class; columns: predicted.", "",
           "| true \\ predicted | " + " | ".join(classes) + " |",
           "|---|" + "---|" * len(classes)]
  lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |"
            for c, row in zip(classes, confusion)]
  lines += ["", "| pair | errors between them (both ways) | experts trained on both |",
            "|---|---|---|"]
  both_ways = lambda a, b: int(confusion[classes.index(a), classes.index(b)] +
                              confusion[classes.index(b), classes.index(a)])
  for (a, b), holders in sorted(pairs.items(), key=lambda pair: -both_ways(*pair[0])):
    lines.append(f"| {a}-{b} | {both_ways(a, b)} | {', '.join(holders) or '**none**'} |")
  text = "\n".join(lines) + "\n"
  print(text)
  out = pathlib.Path(FLAGS.out)
  (out / f"chco_confusion_{data}_{'-'.join(classes)}.md").write_text(text)


if __name__ == "__main__":
  app.run(main)
