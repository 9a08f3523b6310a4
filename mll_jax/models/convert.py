"""Import PyTorch ViT / MAE weights (timm and the official MAE release naming) into mll_jax.

    state = load_state_dict("mae_pretrain_vit_base.pth")       # or a .safetensors file
    params = vit_params_from_torch(state, patch_size=16, channels=3)
    # -> {"encoder": {...}} (+ {"head": {...}} when the file has a classifier head)

Safety: `.safetensors` files are plain tensors; `.pth` files are read with
`torch.load(weights_only=True)`, which refuses anything but tensors and containers (a full
unpickle could run code from the file).
"""

import pathlib
import re

import numpy as np

_BLOCK_KEYS = {  # timm name inside blocks.{i}. -> (our path inside blocks/{i}/, kind)
    "norm1.weight": ("norm1/scale", "copy"), "norm1.bias": ("norm1/bias", "copy"),
    "attn.qkv.weight": ("attn/qkv/kernel", "linear"), "attn.qkv.bias": ("attn/qkv/bias", "copy"),
    "attn.proj.weight": ("attn/proj/kernel", "linear"), "attn.proj.bias": ("attn/proj/bias", "copy"),
    "norm2.weight": ("norm2/scale", "copy"), "norm2.bias": ("norm2/bias", "copy"),
    "mlp.fc1.weight": ("fc1/kernel", "linear"), "mlp.fc1.bias": ("fc1/bias", "copy"),
    "mlp.fc2.weight": ("fc2/kernel", "linear"), "mlp.fc2.bias": ("fc2/bias", "copy"),
}
# Keys of MAE's pre-training checkpoints that belong to its decoder: not part of a ViT.
_IGNORED = re.compile(r"^(decoder_|mask_token)")


class ConversionError(ValueError):
  """A state dict that does not describe a ViT we can rebuild; the message lists why."""


def load_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Tensors of a `.safetensors` or `.pth` file as numpy arrays (MAE's `{"model": ...}` unwrapped)."""
  path = pathlib.Path(path)
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file
    return load_file(str(path))
  if path.suffix in (".pth", ".pt", ".bin"):
    try:
      import torch
    except ImportError:
      raise ConversionError(f"Reading {path.name} needs PyTorch (pip install -e '.[bench]'), "
                            "or convert it to .safetensors first.") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state.get("state_dict", state))
    return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}
  raise ConversionError(f"{path.name}: expected a .safetensors or .pth file.")


def vit_params_from_torch(state: dict, *, patch_size: int, channels: int) -> dict:
  """timm / MAE ViT state dict -> `{"encoder": ..., ["head": ...]}` params of mll_jax models.

  `pos_embed` becomes `encoder/pos_embedding` (for `posemb="learn"` models); with MAE's fixed
  sin-cos positions simply drop that entry from the result. Unknown keys are an error listing
  them; MAE's decoder keys are skipped.
  """
  state = {k: np.asarray(v, np.float32) for k, v in state.items() if not _IGNORED.match(k)}
  used = set()

  def take(key):
    if key not in state:
      raise ConversionError(f"The state dict has no {key!r}; is it a ViT (timm / MAE naming)?")
    used.add(key)
    return state[key]

  weight = take("patch_embed.proj.weight")  # [D, C, p, q]
  if weight.shape[1:] != (channels, patch_size, patch_size):
    raise ConversionError(f"patch_embed.proj.weight has shape {weight.shape}; expected "
                          f"[width, {channels}, {patch_size}, {patch_size}].")
  # Our patches are flattened (p, q, c) (see vit.patchify): reorder the conv kernel to match.
  kernel = weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
  encoder = {"patch_embed": {"kernel": kernel, "bias": take("patch_embed.proj.bias")},
             "cls_token": take("cls_token")}
  if "pos_embed" in state:
    encoder["pos_embedding"] = take("pos_embed")
  depth = 1 + max((int(m.group(1)) for k in state for m in [re.match(r"blocks\.(\d+)\.", k)] if m),
                  default=-1)
  blocks = {}
  for i in range(depth):
    block = {}
    for name, (ours, kind) in _BLOCK_KEYS.items():
      value = take(f"blocks.{i}.{name}")
      _set(block, ours, value.T if kind == "linear" else value)
    blocks[i] = block
  norm_prefix = "norm" if "norm.weight" in state else "fc_norm"
  encoder["transformer"] = {"blocks": blocks, "norm": {"scale": take(f"{norm_prefix}.weight"),
                                                       "bias": take(f"{norm_prefix}.bias")}}
  params = {"encoder": encoder}
  if "head.weight" in state:
    params["head"] = {"kernel": take("head.weight").T, "bias": take("head.bias")}
  unknown = sorted(set(state) - used)
  if unknown:
    raise ConversionError(f"{len(unknown)} keys of the state dict have no place in the ViT: "
                          f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
  return params


def _set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split("/")
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value
