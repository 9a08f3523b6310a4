"""Why a linear probe of an MAE encoder can lose to 1-NN on pixels: the same frozen encoder read
out three ways, each scored by 1-NN and by logistic regression, on the validation holdout.

    python -m experiments.probe_features --encoder=runs/label_efficiency/pretrain_mae
    python -m experiments.probe_features --encoder=RUN --quick      # a smoke run (tests)

Read-outs of the encoder's output tokens (as the probe of configs/linear_probe.py sees them,
deterministic, no masking):
  gap     the mean of the patch tokens (`pool="gap"`, what MAE's fine-tuning pools)
  cls     the cls token (`pool="cls"`, what MAE's linear probe reads)
  tokens  every patch token, concatenated: the layout that averaging discards
beside raw pixels; with `--by_block`, also `gap@K` / `tokens@K` after each earlier block K and
`gap@all` (every block's mean token, concatenated); with `--last_blocks`, `gap@lastK` /
`cls@lastK`, the last K blocks' read-outs as the probe's `config.model.read_blocks=K` takes
them. Logistic regression (scikit-learn, standardised features) takes its C from `--cs` by
holdout accuracy; the table gives the best C's holdout accuracy. Labelled images are the studies' own subsets (mll_jax.data.run_split,
seed 0) of the training split without the holdout; test is never read. Writes
`<out>/probe_features[_by_block][_last_blocks].md`.
"""

import pathlib
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags
from flax import nnx

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from experiments import study_cli  # noqa: E402
from mll_jax import checkpoint, steps, tasks, train  # noqa: E402
from mll_jax.data import holdout, pipeline, run_split, sources  # noqa: E402
from mll_jax.hub import run_import  # noqa: E402

READOUTS = ("gap", "cls", "tokens")


def load_encoder(workdir: pathlib.Path):
  """`(encoder module, run config)` of an MAE run's latest checkpoint."""
  config = run_import.run_config(workdir)
  if config.task != "mae":
    raise run_import.RunImportError(f"{workdir} is a {config.task!r} run; give an MAE "
                                    "pre-training run's workdir.")
  builder = sources.get_builder(config.data.name, config.data.get("data_dir") or None,
                                config.data.get("manual_dir") or None)
  model = nnx.eval_shape(lambda: tasks.get("mae").make_model(config, sources.info(builder),
                                                             nnx.Rngs(0)))
  graphdef, params, _ = steps.split_model(model)
  abstract = {"params": params}
  restored = ocp.PyTreeCheckpointer().restore(
      checkpoint.step_dir(workdir, "The run") / "state", args=ocp.args.PyTreeRestore(
          item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True))
  return steps.merge(graphdef, restored).encoder, config


def readouts(encoder, images: np.ndarray, batch: int = 256) -> dict:
  """`{read-out: features}` of `images` (plus `pixels`), in float32."""
  @jax.jit
  def encode(x):
    pooled, aux = encoder(x)
    tokens = aux["encoded"].astype(np.float32)
    return {"gap": pooled, "cls": tokens[:, 0], "tokens": tokens[:, 1:].reshape(len(x), -1)}
  parts = [jax.device_get(encode(images[i:i + batch])) for i in range(0, len(images), batch)]
  features = {k: np.concatenate([p[k] for p in parts]) for k in READOUTS}
  features["pixels"] = images.reshape(len(images), -1).astype(np.float32)
  return features


def block_readouts(encoder, images: np.ndarray, batch: int = 256) -> dict:
  """`{"gap@K", "tokens@K": features}` after each transformer block K = 1 .. depth - 1 (the
  last block's are `gap` and `tokens`), and `gap@all`: every block's mean patch token
  concatenated, the last one through the final LayerNorm as the probe reads it. Generative
  pre-training's best linear features often lie below the last block (iGPT, BEiT), whose
  output feeds MAE's decoder."""
  transformer = encoder.transformer
  if transformer.layers.scan:
    raise ValueError("Block read-outs need the blocks as a loop: the encoder was built with "
                     "config.model.scan_layers=True; load it with scan_layers=False.")

  @jax.jit
  def encode(x):
    h = encoder.prepend_cls(encoder.embed_patches(x))
    out, gaps = {}, []
    for k, block in enumerate(transformer.blocks, start=1):
      h = block(h)
      patches = (transformer.norm(h) if k == len(transformer.blocks) and transformer.norm
                 else h)[:, 1:].astype(jnp.float32)
      gaps.append(patches.mean(axis=1))
      if k < len(transformer.blocks):
        out[f"gap@{k}"] = gaps[-1]
        out[f"tokens@{k}"] = patches.reshape(len(x), -1)
    out["gap@all"] = jnp.concatenate(gaps, axis=-1)
    return out
  parts = [jax.device_get(encode(images[i:i + batch])) for i in range(0, len(images), batch)]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def last_block_readouts(encoder, images: np.ndarray, batch: int = 256) -> dict:
  """`{"gap@lastK", "cls@lastK": features}` for K = 2 .. depth: the mean patch token (or the
  cls token) of each of the last K blocks, each through the final LayerNorm, concatenated, as
  the probe reads them with `config.model.read_blocks=K` (DINO's `n_last_blocks`)."""
  depth = len(encoder.transformer.rates)

  @jax.jit
  def encode(x):
    outputs = [o.astype(jnp.float32) for o in encoder.transformer.block_outputs(
        encoder.prepend_cls(encoder.embed_patches(x)), last=depth)]
    out = {}
    for k in range(2, depth + 1):
      out[f"gap@last{k}"] = jnp.concatenate([o[:, 1:].mean(axis=1) for o in outputs[-k:]], -1)
      out[f"cls@last{k}"] = jnp.concatenate([o[:, 0] for o in outputs[-k:]], -1)
    return out
  parts = [jax.device_get(encode(images[i:i + batch])) for i in range(0, len(images), batch)]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def scores(train_x, train_y, held_x, held_y, cs: list[float]) -> dict:
  """Holdout accuracy of 1-NN, and of logistic regression at the best of `cs` (and that C)."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  from sklearn.preprocessing import StandardScaler
  knn = KNeighborsClassifier(n_neighbors=1).fit(train_x, train_y)
  scaler = StandardScaler().fit(train_x)
  train_s, held_s = scaler.transform(train_x), scaler.transform(held_x)
  by_c = {c: float((LogisticRegression(C=c, max_iter=1000).fit(train_s, train_y)
                    .predict(held_s) == held_y).mean()) for c in cs}
  best = max(by_c, key=by_c.get)
  return {"knn": float((knn.predict(held_x) == held_y).mean()), "logreg": by_c[best],
          "c": best}


def run(settings: dict) -> list[str]:
  """Every read-out at every fraction; returns the report's lines."""
  started = time.time()
  encoder, config = load_encoder(settings["encoder"])
  config.data.validation = settings["validation"]
  builder = sources.get_builder(config.data.name, config.data.get("data_dir") or None,
                                config.data.get("manual_dir") or None)
  names = sources.info(builder).class_names
  train_source = sources.data_source(builder, config.data.train_split)
  _, held_source = holdout.carve(train_source, config.data, names)
  as_arrays = lambda source: pipeline.eval_arrays(source, size=config.data.image_size,
                                                  channels=config.data.channels)
  held = as_arrays(held_source)
  features_of = lambda images: {
      **readouts(encoder, images),
      **(block_readouts(encoder, images) if settings.get("by_block") else {}),
      **(last_block_readouts(encoder, images) if settings.get("last_blocks") else {})}
  held_features = features_of(held["image"])
  lines = ["| labels | read-out | dims | 1-NN | logistic regression (best C) |",
           "|---|---|---|---|---|"]
  for fraction in settings["fractions"]:
    config.data.labels = fraction
    labelled = as_arrays(run_split.training_source(train_source, config.data, 0, names))
    if settings["quick"]:
      labelled = {k: v[:200] for k, v in labelled.items()}
    features = features_of(labelled["image"])
    for readout in ("pixels", *READOUTS, *sorted(set(features) - {"pixels", *READOUTS})):
      result = scores(features[readout], labelled["label"], held_features[readout],
                      held["label"], settings["cs"])
      lines.append(f"| {fraction} ({len(labelled['label'])}) | {readout} | "
                   f"{features[readout].shape[1]} | {result['knn']:.3f} | "
                   f"{result['logreg']:.3f} (C={result['c']:g}) |")
  return [f"# Read-outs of a frozen MAE encoder ({config.model.variant}, "
          f"{config.data.name}), on the validation holdout", "",
          f"Command: `{settings['command']}`", "",
          f"Encoder: the MAE run's latest checkpoint; holdout: {len(held['label'])} images "
          f"({settings['validation']:.0%} of train, the studies' own); test not read. "
          f"{(time.time() - started) / 60:.1f} min.", "", *lines]


def define_flags() -> None:
  """The command line's flags: defined only when run as a script, so that the tests can import
  this module beside the other studies (absl refuses a flag name defined twice)."""
  flags.DEFINE_string("encoder", None, "An MAE pre-training run's workdir.", required=True)
  flags.DEFINE_list("fractions", ["10%", "100%"], "Label fractions.")
  flags.DEFINE_list("cs", ["0.01", "0.1", "1", "10"], "Logistic regression's C, chosen on the "
                    "holdout.")
  flags.DEFINE_float("validation", 0.1, "Fraction of train held out.")
  flags.DEFINE_bool("by_block", False, "Also read out after each earlier block, and every "
                    "block's mean token concatenated.")
  flags.DEFINE_bool("last_blocks", False, "Also the mean and cls tokens of the last 2 .. depth "
                    "blocks concatenated, as `config.model.read_blocks` reads them.")
  flags.DEFINE_bool("quick", False, "200 labelled images and one C: a smoke run.")
  flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")


def main(argv):
  del argv
  train.setup_runtime()
  args = flags.FLAGS
  settings = {"encoder": pathlib.Path(args.encoder).absolute(), "quick": args.quick,
              "fractions": ["10%"] if args.quick else args.fractions,
              "cs": [1.0] if args.quick else [float(c) for c in args.cs],
              "validation": args.validation, "by_block": args.by_block,
              "last_blocks": args.last_blocks,
              "command": study_cli.command_line(sys.argv)}
  lines = run(settings)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  name = ("probe_features" + ("_by_block" if args.by_block else "")
          + ("_last_blocks" if args.last_blocks else ""))
  (out / (f"{name}_quick.md" if args.quick else f"{name}.md")).write_text(
      "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  define_flags()
  app.run(main)
