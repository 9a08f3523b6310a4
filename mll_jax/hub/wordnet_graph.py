"""Builds the SDAG from WordNet 3.0 through NLTK, and regenerates the graph shipped with mll_jax::

    python -m mll_jax.hub.wordnet_graph            # rewrites mll_jax/hub/data/*.json

WordNet's data comes from NLTK's data folder if it has `corpora/wordnet`, else from the WordNet
database files of Debian's `wordnet-base` and `wordnet-sense-index` packages
(`/usr/share/wordnet`, or `$WORDNET_DIR`). NLTK reads those once they sit in
`<nltk data dir>/corpora/wordnet/` with a `lexnames` file, which the Debian package lacks; it is
written from the package's `lexnames(5WN)` man page.
"""

import gzip
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

from mll_jax.hub import concept_graph, dataset_concepts, sdag

DEBIAN_WORDNET = pathlib.Path("/usr/share/wordnet")
LEXNAMES_MAN_PAGE = pathlib.Path("/usr/share/man/man5/lexnames.5WN.gz")
_POS_CODE = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetMissing(RuntimeError):
  """WordNet's data files are not on this machine."""


def _lexnames_from_man_page(man_page: pathlib.Path) -> str:
  """WordNet's `lexnames` file (`NN<TAB>noun.animal<TAB>1`) from the lexnames(5WN) man page."""
  lines = []
  for line in gzip.open(man_page, "rt").read().splitlines():
    match = re.match(r"^(\d\d)\t\s*([a-z]+)\.([A-Za-z]+)\s", line + " ")
    if match:
      number, pos, name = match.groups()
      lines.append(f"{number}\t{pos}.{name}\t{_POS_CODE[pos]}")
  if len(lines) != 45:  # WordNet 3.0 has 45 lexicographer files
    raise WordNetMissing(f"{man_page} lists {len(lines)} lexicographer files, not WordNet 3.0's "
                         "45; reinstall wordnet-base.")
  return "\n".join(lines) + "\n"


def _nltk_layout(source: pathlib.Path, cache: pathlib.Path) -> pathlib.Path:
  """`cache/corpora/wordnet` holding `source`'s database files and a lexnames file (made once,
  in a temporary folder renamed into place, so a crash leaves nothing half-copied)."""
  target = cache / "corpora" / "wordnet"
  if (target / "lexnames").exists():
    return target
  if not LEXNAMES_MAN_PAGE.exists() and not (source / "lexnames").exists():
    raise WordNetMissing(f"WordNet's lexnames file is missing (looked for {source / 'lexnames'} "
                         f"and {LEXNAMES_MAN_PAGE}); install Debian's wordnet-base.")
  target.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
  for path in source.iterdir():
    if path.is_file():
      shutil.copyfile(path, staging / path.name)
  if not (staging / "lexnames").exists():
    (staging / "lexnames").write_text(_lexnames_from_man_page(LEXNAMES_MAN_PAGE))
  try:
    staging.rename(target)
  except OSError:  # another process finished first
    shutil.rmtree(staging, ignore_errors=True)
  return target


def open_wordnet(wordnet_dir: str | None = None, cache_dir: str | None = None):
  """An NLTK `WordNetCorpusReader` over WordNet 3.0 (see the module docstring for where the data
  comes from). Raises WordNetMissing with the fix when there is none."""
  try:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
  except ImportError:
    raise WordNetMissing("Building the SDAG needs NLTK: pip install nltk (or the `test` "
                         "extra).") from None
  import warnings
  if wordnet_dir is None:
    try:
      root = nltk.data.find("corpora/wordnet")
      with warnings.catch_warnings():  # "multilingual functions are not available": not used
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(root, None)
    except LookupError:
      pass
  source = pathlib.Path(wordnet_dir or os.environ.get("WORDNET_DIR") or DEBIAN_WORDNET)
  # NLTK 3.10 reads index.sense whenever it opens WordNet; Debian ships it separately.
  missing = [name for name in ("data.noun", "index.sense") if not (source / name).exists()]
  if missing:
    raise WordNetMissing(f"No WordNet {' or '.join(missing)} in {source}: install the files "
                         "with `apt-get install -y wordnet-base wordnet-sense-index` "
                         "(Debian/Ubuntu), or point $WORDNET_DIR at a folder holding data.noun, "
                         "index.noun, index.sense, ...")
  cache = pathlib.Path(cache_dir or pathlib.Path.home() / ".cache" / "mll_jax" / "nltk_data")
  target = _nltk_layout(source, cache)
  # NLTK only opens corpora under its data path (its path sandbox), so the cache joins it.
  if str(cache) not in nltk.data.path:
    nltk.data.path.insert(0, str(cache))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return WordNetCorpusReader(str(target), None)


def synset_id(synset) -> str:
  """WordNet's id of a noun synset, as ImageNet writes it: `n` + 8-digit offset."""
  return f"{synset.pos()}{synset.offset():08d}"


def _words(synset) -> tuple[str, ...]:
  return tuple(name.replace("_", " ") for name in synset.lemma_names())


def build(datasets: dict[str, dict[str, str]], wordnet) -> tuple[sdag.SDAG, dict]:
  """The SDAG of every class of `datasets` (data set -> class name -> concept, as in
  `dataset_concepts`) and all their WordNet hypernyms (instance hypernyms too), and the map
  data set -> class name -> node id."""
  nodes, edges, class_nodes = {}, set(), {}
  extra_synonyms = {}

  def add_synset(synset) -> str:
    todo = [synset]
    while todo:
      current = todo.pop()
      node_id = synset_id(current)
      if node_id in nodes:
        continue
      nodes[node_id] = sdag.Node(node_id, _words(current)[0], _words(current))
      for parent in current.hypernyms() + current.instance_hypernyms():
        edges.add((synset_id(parent), node_id))
        todo.append(parent)
    return synset_id(synset)

  for dataset, classes in datasets.items():
    class_nodes[dataset] = {}
    for class_name, concept in classes.items():
      if concept.startswith(dataset_concepts.NEW_PREFIX):
        parent = add_synset(wordnet.synset(concept[len(dataset_concepts.NEW_PREFIX):]))
        node_id = f"{dataset}:{class_name}"
        nodes[node_id] = sdag.Node(node_id, class_name.replace("_", " "))
        edges.add((parent, node_id))
      elif re.fullmatch(r"n\d{8}", concept):
        node_id = add_synset(wordnet.synset_from_pos_and_offset("n", int(concept[1:])))
      else:
        node_id = add_synset(wordnet.synset(concept))
      class_nodes[dataset][class_name] = node_id
      extra_synonyms.setdefault(node_id, []).append(class_name.replace("_", " "))
  for node_id, names in extra_synonyms.items():  # e.g. CIFAR's "automobile" for car.n.01
    node = nodes[node_id]
    synonyms = tuple(dict.fromkeys((*node.synonyms, *names)))
    nodes[node_id] = sdag.Node(node.id, node.name, synonyms)
  graph = sdag.SDAG([nodes[i] for i in sorted(nodes)], sorted(edges))
  return graph, class_nodes


def main(argv: list[str]) -> None:
  """Regenerates the shipped graph and class map from WordNet."""
  out = pathlib.Path(argv[1]) if len(argv) > 1 else concept_graph.DATA_DIR
  graph, class_nodes = build(dataset_concepts.known(), open_wordnet())
  sdag.save(graph, out / concept_graph.GRAPH_FILE)
  (out / concept_graph.CLASS_NODES_FILE).write_text(json.dumps(class_nodes, indent=1) + "\n")
  print(f"Wrote {len(graph)} nodes ({sum(map(len, class_nodes.values()))} data set classes) "
        f"to {out}.")


if __name__ == "__main__":
  main(sys.argv)
