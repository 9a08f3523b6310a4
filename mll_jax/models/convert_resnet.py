"""Import torchvision and timm ResNet weights (their shared `conv1`, `bn1`, `layer{s}.{i}...`,
`fc` naming) into the ResNet of `resnet.py`.

    state = convert.load_state_dict("resnet50.safetensors")        # or .pth (weights_only)
    variables = resnet_variables_from_torch(state, "resnet50")
    # -> {"params": {"encoder": ..., ["head": ...]}, "model_state": {"encoder": ...}}

BatchNorm running statistics become model state, so the imported model matches the source's
eval mode. Every key is placed or the conversion fails naming it; `num_batches_tracked` (torch
bookkeeping with no role in eval) is the only key set aside. A state dict of another depth or
family fails with the keys it lacks and the keys it has too many.
"""

import re

import numpy as np

from mll_jax.models import convert, resnet

_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("model_state", "mean"), "running_var": ("model_state", "var")}
# torchvision / timm module name inside a block -> ours
_BLOCK_MODULES = {"conv1": "conv1", "bn1": "norm1", "conv2": "conv2", "bn2": "norm2",
                  "conv3": "conv3", "bn3": "norm3", "downsample.0": "shortcut",
                  "downsample.1": "shortcut_norm"}


def _block_index(size: resnet.ResNetSize) -> dict[tuple[int, int], int]:
  """(stage, block in stage) -> index in our flat block list."""
  index, out = 0, {}
  for stage, count in enumerate(size.blocks):
    for i in range(count):
      out[(stage, i)] = index
      index += 1
  return out


def _target(key: str, size: resnet.ResNetSize):
  """`(collection, path tuple, kind)` for a torch key, or None if it is not ResNet's."""
  if key.startswith("fc."):
    return "params", ("head", "kernel" if key == "fc.weight" else "bias"), \
        "linear" if key == "fc.weight" else "copy"
  match = re.fullmatch(r"(conv1|bn1)\.(\w+)", key)
  if match:
    module, leaf = match.groups()
    return _leaf(("encoder", "stem" if module == "conv1" else "stem_norm"), leaf)
  match = re.fullmatch(r"layer(\d+)\.(\d+)\.(\w+(?:\.\d)?)\.(\w+)", key)
  if match:
    stage, i, module, leaf = int(match.group(1)) - 1, int(match.group(2)), *match.groups()[2:]
    flat = _block_index(size).get((stage, i))
    if flat is None or module not in _BLOCK_MODULES:
      return None
    return _leaf(("encoder", "blocks", flat, _BLOCK_MODULES[module]), leaf)
  return None


def _leaf(prefix: tuple, leaf: str):
  if "norm" not in str(prefix[-1]):  # a conv: its weight only (ResNet convs have no bias)
    return ("params", prefix + ("kernel",), "conv") if leaf == "weight" else None
  if leaf in _BN:
    collection, name = _BN[leaf]
    return collection, prefix + (name,), "copy"
  return None


def resnet_variables_from_torch(state: dict, variant: str) -> dict:
  """torchvision / timm ResNet state dict -> `{"params", "model_state"}` of `variant`."""
  size = resnet.resnet_size(variant)
  if size.selective_kernel:
    raise convert.ConversionError("Selective-kernel ResNets have no torchvision/timm layout; "
                                  "import plain ResNets only.")
  out = {"params": {}, "model_state": {}}
  unplaced = []
  for key, value in state.items():
    if key.endswith("num_batches_tracked"):
      continue
    target = _target(key, size)
    if target is None:
      unplaced.append(key)
      continue
    collection, path, kind = target
    value = np.asarray(value, np.float32)
    if kind == "conv":  # torch [out, in, kh, kw] -> flax [kh, kw, in, out]
      value = value.transpose(2, 3, 1, 0)
    elif kind == "linear":
      value = value.T
    node = out[collection]
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  expected = _expected_keys(size)
  missing = sorted(k for k in expected if k not in state)
  if unplaced or missing:
    lines = ([f"not a key of {variant}: {k}" for k in unplaced[:20]] +
             [f"missing for {variant}: {k}" for k in missing[:20]])
    raise convert.ConversionError(
        f"The state dict is not a torchvision/timm {variant} ({len(unplaced)} unexpected, "
        f"{len(missing)} missing keys):\n  " + "\n  ".join(lines) +
        "\nCheck the variant (depth, width) matches the file.")
  _check_shapes(out, variant)
  return out


def _expected_keys(size: resnet.ResNetSize) -> list[str]:
  keys = ["conv1.weight"] + [f"bn1.{n}" for n in _BN]
  cin = size.base_width * size.width_multiplier
  for stage, count in enumerate(size.blocks):
    width = size.base_width * size.width_multiplier * 2 ** stage
    for i in range(count):
      prefix = f"layer{stage + 1}.{i}."
      convs = ("1", "2", "3") if size.bottleneck else ("1", "2")
      for c in convs:
        keys += [f"{prefix}conv{c}.weight"] + [f"{prefix}bn{c}.{n}" for n in _BN]
      cout = width * 4 if size.bottleneck else width
      if (i == 0 and stage > 0) or cin != cout:
        keys += [f"{prefix}downsample.0.weight"] + [f"{prefix}downsample.1.{n}" for n in _BN]
      cin = cout
  return keys


def _check_shapes(variables: dict, variant: str) -> None:
  """Each converted array must have the shape the model's variable has (a width mismatch)."""
  import jax
  from flax import nnx
  stem_kernel = variables["params"]["encoder"]["stem"]["kernel"]
  channels = stem_kernel.shape[2]
  model = nnx.eval_shape(lambda: resnet.ResNet(variant, image_size=224, channels=channels,
                                               rngs=nnx.Rngs(0)))
  want = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
          "model_state": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))}
  flat = lambda tree: {jax.tree_util.keystr(k): tuple(np.shape(v))
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got = flat({c: {"encoder": variables[c]["encoder"]} for c in want})
  expected = flat(want)
  wrong = [f"{k}: file {got[k]} vs {variant} {expected[k]}" for k in expected
           if k in got and got[k] != expected[k]]
  if wrong:
    raise convert.ConversionError(f"The state dict's shapes are not {variant}'s:\n  " +
                                  "\n  ".join(wrong[:20]))
