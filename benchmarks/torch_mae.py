"""The MAE of `mll_jax.models.mae` written in PyTorch, as the speed baseline.

Blocks follow timm's ViT `Block` line for line (fused qkv, `F.scaled_dot_product_attention`,
exact GELU, pre-norm). timm itself cannot be imported on machines without a torchvision build
for the installed torch (CPU-only wheels here), so the block is reproduced rather than imported.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mll_jax.models import posembed


class Attention(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(dim, dim * 3)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    x = F.scaled_dot_product_attention(q, k, v)
    return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
  def __init__(self, dim, heads, mlp_dim):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, heads)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.fc1 = nn.Linear(dim, mlp_dim)
    self.fc2 = nn.Linear(mlp_dim, dim)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def _stack(size):
  return nn.Sequential(*[Block(size.width, size.heads, size.mlp_dim) for _ in range(size.depth)],
                       nn.LayerNorm(size.width, eps=1e-6))


class TorchMAE(nn.Module):
  """Same sizes, masking, decoder and norm-pix loss as the JAX MAE."""

  def __init__(self, encoder, decoder, image_size, channels, patch, mask_ratio=0.75):
    super().__init__()
    self.patch, self.mask_ratio = patch, mask_ratio
    grid = image_size // patch
    self.patch_embed = nn.Linear(patch * patch * channels, encoder.width)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, encoder.width))
    self.register_buffer("pos", torch.from_numpy(posembed.sincos_2d(grid, grid, encoder.width, True)))
    self.encoder = _stack(encoder)
    self.decoder_embed = nn.Linear(encoder.width, decoder.width)
    self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.width))
    self.register_buffer("dec_pos", torch.from_numpy(posembed.sincos_2d(grid, grid, decoder.width, True)))
    self.decoder = _stack(decoder)
    self.decoder_pred = nn.Linear(decoder.width, patch * patch * channels)

  def patchify(self, images):
    b, h, w, c = images.shape
    p = self.patch
    x = images.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)

  def forward(self, images):
    images = images.float() / 127.5 - 1.0
    target = self.patchify(images)
    x = self.patch_embed(target) + self.pos[1:]
    b, length, d = x.shape
    keep = int(length * (1 - self.mask_ratio))
    ids_shuffle = torch.argsort(torch.rand(b, length), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, length)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    cls = (self.cls_token + self.pos[:1]).expand(b, -1, -1)
    x = self.encoder(torch.cat([cls, x], dim=1))
    x = self.decoder_embed(x)
    masked = self.mask_token.expand(b, length + 1 - x.shape[1], -1)
    patches = torch.cat([x[:, 1:], masked], dim=1)
    patches = torch.gather(patches, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[2]))
    x = torch.cat([x[:, :1], patches], dim=1) + self.dec_pos
    pred = self.decoder_pred(self.decoder(x))[:, 1:]
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=False)
    target = (target - mean) / (var + 1e-6).sqrt()
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum()


  def encode(self, images):
    """Every patch through the encoder (no masking), mean-pooled: the labelling forward."""
    x = self.patch_embed(self.patchify(images.float() / 127.5 - 1.0)) + self.pos[1:]
    cls = (self.cls_token + self.pos[:1]).expand(x.shape[0], -1, -1)
    return self.encoder(torch.cat([cls, x], dim=1))[:, 1:].mean(1)


def _autocast(bfloat16: bool):
  # PyTorch's CPU AMP: matmuls in bfloat16, its float32 list (norms, softmax, losses) in float32.
  return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16)


def train_step_fn(model, lr=1e-3, bfloat16: bool = False):
  """An eager AdamW(0.9, 0.95) step: forward, backward, update; `bfloat16` runs the forward
  under CPU autocast (parameters and optimizer stay float32, as in the JAX policy)."""
  opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)

  def step(images: np.ndarray) -> float:
    opt.zero_grad(set_to_none=True)
    with _autocast(bfloat16):
      loss = model(torch.from_numpy(images))
    loss.backward()
    opt.step()
    return loss.item()

  return step


def encode_fn(model, bfloat16: bool = False):
  """Eager, gradient-free encoder inference returning the pooled features."""
  def encode(images: np.ndarray):
    with torch.inference_mode(), _autocast(bfloat16):
      return model.encode(torch.from_numpy(images)).float().sum().item()

  return encode
