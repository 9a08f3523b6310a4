"""Import PyTorch ViT / MAE weights (timm and the official MAE release naming) into mll_jax.

    state = load_state_dict("mae_pretrain_vit_base.pth")       # or a .safetensors file
    params = vit_params_from_torch(state, patch_size=16, channels=3, drop_mae_decoder=True)
    # -> {"encoder": {...}} (+ {"head": {...}} when the file has a classifier head)

Every key of the state dict is placed, or the conversion fails naming it: nothing is dropped or
remapped silently. The model options a checkpoint needs are checked, not guessed:
`fc_norm=True` for a LayerNorm after pooling (`fc_norm.*`: timm's `global_pool="avg"`, MAE's
fine-tuning layout), `qkv_bias=False` for attention without a qkv bias.

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
# Keys of MAE's pre-training checkpoints that belong to its decoder: not part of a ViT, so
# dropped on request (`drop_mae_decoder=True`) and an error otherwise.
_MAE_DECODER = re.compile(r"^(decoder_|mask_token$)")


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


def vit_params_from_torch(state: dict, *, patch_size: int, channels: int,
                          fc_norm: bool = False, qkv_bias: bool = True,
                          drop_mae_decoder: bool = False) -> dict:
  """timm / MAE ViT state dict -> `{"encoder": ..., ["head": ...]}` params of mll_jax models.

  Build the model with the same `fc_norm` and `qkv_bias` (e.g. `heads.Classifier(...,
  posemb="learn", fc_norm=True)`). `pos_embed` becomes `encoder/pos_embedding` (for
  `posemb="learn"` models); with MAE's fixed sin-cos positions drop that entry from the result.
  A key the ViT has no place for is an error naming it; so is a layout that disagrees with
  `fc_norm` / `qkv_bias`, with the option to change. MAE's decoder keys are dropped only with
  `drop_mae_decoder=True`.
  """
  decoder = sorted(k for k in state if _MAE_DECODER.match(k))
  if decoder and not drop_mae_decoder:
    raise ConversionError(f"{len(decoder)} keys belong to MAE's pre-training decoder "
                          f"({decoder[0]!r}, ...): pass drop_mae_decoder=True to import the "
                          "encoder alone.")
  state = {k: np.asarray(v, np.float32) for k, v in state.items() if k not in decoder}
  _check_layout(state, fc_norm=fc_norm, qkv_bias=qkv_bias)
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
      if name == "attn.qkv.bias" and not qkv_bias:
        continue
      value = take(f"blocks.{i}.{name}")
      _set(block, ours, value.T if kind == "linear" else value)
    blocks[i] = block
  encoder["transformer"] = {"blocks": blocks}
  norm = {"scale": take("fc_norm.weight" if fc_norm else "norm.weight"),
          "bias": take("fc_norm.bias" if fc_norm else "norm.bias")}
  if fc_norm:
    encoder["fc_norm"] = norm
  else:
    encoder["transformer"]["norm"] = norm
  params = {"encoder": encoder}
  if "head.weight" in state:
    params["head"] = {"kernel": take("head.weight").T, "bias": take("head.bias")}
  unplaced = sorted(set(state) - used)
  if unplaced:
    raise ConversionError(f"{len(unplaced)} keys of the state dict have no place in the ViT: "
                          f"{unplaced[:10]}{' ...' if len(unplaced) > 10 else ''}")
  return params


def _check_layout(state: dict, *, fc_norm: bool, qkv_bias: bool) -> None:
  """The checkpoint's final norm and qkv bias agree with the options, else say which to set."""
  has_fc_norm, has_norm = "fc_norm.weight" in state, "norm.weight" in state
  if fc_norm and not has_fc_norm:
    raise ConversionError("fc_norm=True, but the state dict has no 'fc_norm.weight' (a "
                          "LayerNorm after pooling)" + (": its final LayerNorm is 'norm.*', "
                                                        "so use fc_norm=False." if has_norm else "."))
  if not fc_norm and has_fc_norm:
    raise ConversionError("The state dict normalises after pooling ('fc_norm.*': timm's "
                          "global_pool='avg', MAE's fine-tuning layout); convert with "
                          "fc_norm=True and build the model with fc_norm=True.")
  has_qkv_bias = any(k.endswith(".attn.qkv.bias") for k in state)
  if qkv_bias and not has_qkv_bias and any(k.endswith(".attn.qkv.weight") for k in state):
    raise ConversionError("The state dict has no 'blocks.*.attn.qkv.bias' (timm's "
                          "qkv_bias=False): convert with qkv_bias=False and build the model "
                          "with qkv_bias=False.")
  if not qkv_bias and has_qkv_bias:
    raise ConversionError("qkv_bias=False, but the state dict has 'blocks.*.attn.qkv.bias': "
                          "convert with qkv_bias=True.")


def _set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split("/")
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value
