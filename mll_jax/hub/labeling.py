"""Model labelling (shared/design/mll.md, section 2): node pools owned by the hub, the response
tensor of a model on them (its model label), and the per-node views derived from it.

Pools: every class of the labelled source data sets that maps to an SDAG node gives its node up
to `cap` images (class-balanced, drawn with a seed); every ancestor of those nodes gets a capped
sample spread evenly over its descendants' pools. Images are stored once; a node's pool is a
list of image indices, so a model runs once per image however many nodes the image serves.

Label: `responses[i, c] = log_softmax(f_m(x_i))_c` over the pool images, computed in large
jitted batches sharded over the data axis of a mesh. Labelling involves no target task.
"""

import dataclasses
import functools
import hashlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mll_jax import sharding
from mll_jax.evaluators import context as eval_context
from mll_jax.hub import sdag
from mll_jax.storage import objects

POOLS_FILE = "pools.npz"


@dataclasses.dataclass(frozen=True)
class Pools:
  """Pool images and node memberships. `members[k]` are the image indices of node `node_ids[k]`;
  `image_nodes[i]` is the (leaf) node index image `i` was drawn for."""
  images: np.ndarray            # [N, H, W, C] uint8
  image_nodes: np.ndarray       # [N] int32, index into node_ids
  node_ids: tuple[str, ...]
  members: tuple[np.ndarray, ...]

  @property
  def fingerprint(self) -> str:
    """SHA-256 over images and memberships: ties a label to the pools it was computed on."""
    digest = hashlib.sha256(self.images.tobytes())
    digest.update("\n".join(self.node_ids).encode())
    for m in self.members:
      digest.update(np.asarray(m, np.int64).tobytes())
    return digest.hexdigest()

  def pool(self, node_id: str) -> np.ndarray:
    return self.members[self.node_ids.index(node_id)]


def build_pools(sources: list[tuple[np.ndarray, np.ndarray, dict]], graph: sdag.SDAG,
                cap: int = 50, seed: int = 0) -> Pools:
  """Pools from labelled data. Each source is `(images [N,H,W,C] uint8, labels [N], {label
  index: node id})`; classes without a node are skipped. Deterministic for a seed."""
  rng = np.random.default_rng(seed)
  leaf_images: dict[str, list[np.ndarray]] = {}
  for images, labels, nodes in sources:
    labels = np.asarray(labels)
    for label, node in sorted(nodes.items()):
      if not node:
        continue
      if node not in graph:
        raise ValueError(f"Pool node {node!r} (label {label}) is not in the SDAG.")
      index = np.flatnonzero(labels == label)
      leaf_images.setdefault(node, []).append(images[rng.permutation(index)[:cap]])
  if not leaf_images:
    raise ValueError("No class of the pool sources maps to an SDAG node: nothing to label on.")
  shapes = {imgs[0].shape[1:] for imgs in leaf_images.values()}
  if len(shapes) != 1:
    raise ValueError(f"Pool images must share one shape, got {sorted(shapes)}.")
  leaves = sorted(leaf_images)
  images, image_leaf, leaf_members = [], [], {}
  start = 0
  for k, node in enumerate(leaves):
    drawn = np.concatenate(leaf_images[node])
    drawn = drawn[rng.permutation(len(drawn))[:cap]]  # cap also when sources share a node
    images.append(drawn)
    image_leaf.append(np.full(len(drawn), k, np.int32))
    leaf_members[node] = np.arange(start, start + len(drawn))
    start += len(drawn)
  inner = sorted(set().union(*(graph.ancestors(n) for n in leaves)) - set(leaves))
  node_ids = tuple(leaves + inner)
  members = [leaf_members[n] for n in leaves]
  for node in inner:
    below = [leaf_members[n] for n in leaves if n in graph.descendants(node)]
    members.append(_spread_sample(below, cap, rng))
  return Pools(np.concatenate(images), np.concatenate(image_leaf), node_ids, tuple(members))


def _spread_sample(groups: list[np.ndarray], cap: int, rng) -> np.ndarray:
  """Up to `cap` indices, as evenly over the groups as their sizes allow (class-balanced)."""
  shuffled = [rng.permutation(g) for g in groups]
  picked, depth = [], 0
  while len(picked) < cap and any(depth < len(g) for g in shuffled):
    for g in rng.permutation(len(shuffled)):
      if depth < len(shuffled[g]) and len(picked) < cap:
        picked.append(shuffled[g][depth])
    depth += 1
  return np.sort(np.asarray(picked, np.int64))


def save_pools(pools: Pools, path: str | os.PathLike) -> None:
  """Writes the pools as one `.npz` (no pickle), whole (a reader never sees a part), on local
  disk or in a bucket."""
  offsets = np.cumsum([0] + [len(m) for m in pools.members])
  buffer = io.BytesIO()
  np.savez(buffer, images=pools.images, image_nodes=pools.image_nodes,
           node_ids=np.asarray(pools.node_ids), member_offsets=offsets,
           member_indices=np.concatenate(pools.members))
  objects.write(path, buffer.getvalue())


def load_pools(path: str | os.PathLike) -> Pools:
  """Reads pools written by `save_pools` (`allow_pickle=False`)."""
  with np.load(io.BytesIO(objects.read(path)), allow_pickle=False) as data:
    offsets, indices = data["member_offsets"], data["member_indices"]
    return Pools(data["images"], data["image_nodes"], tuple(str(n) for n in data["node_ids"]),
                 tuple(indices[offsets[k]:offsets[k + 1]] for k in range(len(offsets) - 1)))


@functools.lru_cache(maxsize=64)
def _responses(apply_fn):
  """The jitted `log_softmax(apply_fn(...))`, one per apply function, so labelling many models
  of one architecture (`functional.apply_fn` is cached per architecture) compiles once."""

  @jax.jit
  def responses(variables, images):
    return jax.nn.log_softmax(apply_fn(variables, images).astype(jnp.float32), axis=-1)

  return responses


def default_batch_size(mesh: jax.sharding.Mesh) -> int:
  """64 images per device on CPU, where larger batches fall out of cache and run slower per
  image (measured: mini ViT, 2,350 images/s at 64 vs 1,026 at 1,024); 256 per accelerator."""
  return (64 if jax.default_backend() == "cpu" else 256) * mesh.size


def label_model(apply_fn, variables, pools: Pools, batch_size: int | None = None,
                mesh: jax.sharding.Mesh | None = None) -> dict:
  """The model label: `{"responses": [N, C] float32, "pools_fingerprint": str}`, computed in
  jitted batches sharded over the mesh's data axis (all devices by default), one compiled shape
  (the last batch is padded)."""
  mesh = mesh or sharding.make_mesh((("data", -1),))
  batch_size = batch_size or default_batch_size(mesh)
  responses = _responses(apply_fn)
  variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
  out = eval_context.map_batches(responses, variables, pools.images, batch_size, mesh)
  return {"responses": out, "pools_fingerprint": np.asarray(pools.fingerprint)}


def head_scores(responses: np.ndarray, pools: Pools) -> dict[str, np.ndarray]:
  """Per node (rows, `pools.node_ids` order) and head (columns) views of a label:
  `precision`, `recall`, `f1` of "head c is the argmax" as a detector of node v's pool images
  among all pool images, and `mean_response` of head c on node v's pool."""
  predicted = responses.argmax(-1)
  heads = responses.shape[1]
  predicted_count = np.bincount(predicted, minlength=heads).astype(np.float64)
  rows = {"precision": [], "recall": [], "f1": [], "mean_response": []}
  for members in pools.members:
    hits = np.bincount(predicted[members], minlength=heads).astype(np.float64)
    precision = np.divide(hits, predicted_count, out=np.zeros(heads), where=predicted_count > 0)
    recall = hits / max(len(members), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(heads),
                   where=precision + recall > 0)
    rows["precision"].append(precision)
    rows["recall"].append(recall)
    rows["f1"].append(f1)
    rows["mean_response"].append(responses[members].mean(0))
  return {k: np.stack(v) for k, v in rows.items()}
