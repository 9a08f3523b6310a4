"""The SDAG: validation with clear errors, graph queries, name lookup, JSON round trip, and the
graph shipped with the package (rebuilt from WordNet where WordNet is installed: CI installs it)."""

import json
import os

import pytest

from mll_jax.hub import concept_graph, dataset_concepts, sdag, wordnet_graph


def _graph(edges, extra=()):
  names = sorted({n for edge in edges for n in edge} | set(extra))
  return sdag.SDAG([sdag.Node(n, n.replace("_", " ")) for n in names], edges)


@pytest.fixture
def animals():
  # A DAG, not a tree: dog and cat are both mammals and pets.
  return _graph([("animal", "mammal"), ("mammal", "dog"), ("mammal", "cat"), ("pet", "dog"),
                 ("pet", "cat"), ("dog", "poodle"), ("animal", "bird")])


def test_ancestors_descendants_and_lowest_common_ancestors(animals):
  assert animals.ancestors("poodle") == {"dog", "mammal", "pet", "animal"}
  assert animals.descendants("mammal") == {"dog", "cat", "poodle"}
  assert animals.descendants("mammal", include_self=True) == {"mammal", "dog", "cat", "poodle"}
  assert animals.lowest_common_ancestors("poodle", "cat") == {"mammal", "pet"}
  assert animals.lowest_common_ancestors("poodle", "bird") == {"animal"}
  assert animals.lowest_common_ancestors("poodle", "dog") == {"dog"}
  assert animals.lowest_common_ancestors("cat", "pet") == {"pet"}
  assert sorted(animals.roots()) == ["animal", "pet"]
  with pytest.raises(KeyError, match="No SDAG node 'wolf'"):
    animals.ancestors("wolf")


def test_lookup_normalises_case_accents_and_separators():
  graph = sdag.SDAG([sdag.Node("n1", "Great Dane", ("great_dane", "Dogue allemand")),
                     sdag.Node("n2", "café", ()), sdag.Node("n3", "dane", ("great-dane",))], [])
  assert graph.lookup("  GREAT_dane ") == ["n1", "n3"]  # the name match first, then synonyms
  assert graph.lookup("Cafe") == ["n2"]
  assert graph.lookup("dogue-allemand") == ["n1"]
  assert graph.lookup("wolf") == []
  assert sdag.normalise("Great_Dane") == sdag.normalise(" great-dane ") == "great dane"


def test_json_round_trip(animals, tmp_path):
  path = tmp_path / "graph.json"
  sdag.save(animals, path)
  loaded = sdag.load(path)
  assert loaded.to_dict() == animals.to_dict()
  assert loaded.lowest_common_ancestors("poodle", "cat") == {"mammal", "pet"}
  assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]  # no temporary file left


def test_a_cycle_is_refused_and_named(tmp_path):
  with pytest.raises(sdag.SDAGError, match="cycle: a -> b -> c -> a"):
    _graph([("root", "a"), ("a", "b"), ("b", "c"), ("c", "a")])
  with pytest.raises(sdag.SDAGError, match="cycle: x -> x"):
    _graph([("x", "x")])
  path = tmp_path / "cyclic.json"
  path.write_text(json.dumps({"format": sdag.FORMAT, "edges": [["a", "b"], ["b", "a"]],
                              "nodes": [{"id": "a", "name": "a"}, {"id": "b", "name": "b"}]}))
  with pytest.raises(sdag.SDAGError, match="cycle: a -> b -> a"):
    sdag.load(path)


@pytest.mark.parametrize("data, message", [
    ({"format": sdag.FORMAT, "nodes": [{"id": "a"}, {"id": "a"}, {"id": "b"}], "edges": []},
     "Duplicate node ids: a"),
    ({"format": sdag.FORMAT, "nodes": [{"id": "a"}], "edges": [["a", "ghost"]]},
     "Edges name nodes that do not exist: a -> ghost"),
    ({"format": sdag.FORMAT, "nodes": [{"id": ""}], "edges": []}, "empty or non-string id"),
    ({"format": sdag.FORMAT, "nodes": [{"name": "no id"}], "edges": []}, "malformed"),
    ({"format": sdag.FORMAT, "nodes": [], "edges": [["a"]]}, "malformed"),
    ({"nodes": [], "edges": []}, "not an SDAG file"),
])
def test_invalid_graphs_get_one_clear_error(data, message, tmp_path):
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(data))
  with pytest.raises(sdag.SDAGError, match=message):
    sdag.load(path)


def test_unreadable_files_get_clear_errors(tmp_path):
  with pytest.raises(sdag.SDAGError, match="No SDAG file"):
    sdag.load(tmp_path / "missing.json")
  (tmp_path / "broken.json").write_text("{not json")
  with pytest.raises(sdag.SDAGError, match="not valid JSON"):
    sdag.load(tmp_path / "broken.json")


def test_shipped_graph_maps_every_known_class():
  graph = concept_graph.default_graph()
  assert set(concept_graph.datasets()) == set(dataset_concepts.known())
  for dataset in concept_graph.datasets():
    nodes = concept_graph.class_nodes(dataset)
    assert len(set(nodes.values())) == len(nodes), dataset  # distinct classes, distinct nodes
    assert all(node in graph for node in nodes.values())
  assert len(concept_graph.class_nodes("imagenet2012")) == 1000
  animals = concept_graph.class_nodes("animal_mnist")
  digits = concept_graph.class_nodes("idx/mnist")  # TFDS-style names work too
  name = lambda ids: {graph.nodes[i].name for i in ids}
  assert name(graph.lowest_common_ancestors(animals["zebra"], animals["horse"])) == {"equine"}
  assert name(graph.lowest_common_ancestors(digits["3"], digits["7"])) == {"digit"}
  assert "mammal" in name(graph.ancestors(animals["giraffe"]))
  assert graph.lookup("7") == [digits["7"]] and graph.lookup("automobile") == ["n02958343"]
  # An ImageNet class id is its own node; CIFAR-100's aquarium fish is a new kind of fish.
  assert "n01440764" in graph and name(graph.parents["cifar100:aquarium_fish"]) == {"fish"}
  with pytest.raises(KeyError, match="No SDAG classes for data set 'svhn'"):
    concept_graph.class_nodes("svhn")


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory):
  # A fresh cache: NLTK's layout and the lexnames file are made from the system's files here.
  try:
    return wordnet_graph.open_wordnet(cache_dir=str(tmp_path_factory.mktemp("nltk_data")))
  except wordnet_graph.WordNetMissing as e:
    if os.environ.get("CI"):  # .ci/run installs WordNet: there, its absence is a failure
      raise
    pytest.skip(f"WordNet is not installed here ({e})")


@pytest.mark.slow
def test_wordnet_builder_reproduces_the_shipped_graph(wordnet):
  graph, class_nodes = wordnet_graph.build(dataset_concepts.known(), wordnet)
  assert graph.to_dict() == concept_graph.default_graph().to_dict()
  shipped = json.loads((concept_graph.DATA_DIR / concept_graph.CLASS_NODES_FILE).read_text())
  assert class_nodes == shipped


def test_wordnet_builder_on_a_small_class_list(wordnet):
  graph, class_nodes = wordnet_graph.build({"toy": {"poodle": "poodle.n.01",
                                                    "siamese": "siamese_cat.n.01",
                                                    "robot_dog": "new:dog.n.01"}}, wordnet)
  nodes = class_nodes["toy"]
  assert graph.nodes[nodes["poodle"]].name == "poodle"
  assert graph.lowest_common_ancestors(nodes["poodle"], nodes["robot_dog"]) == {"n02084071"}
  assert graph.nodes["n02084071"].name == "dog"
  carnivore = graph.lookup("carnivore")
  assert carnivore and carnivore[0] in graph.lowest_common_ancestors(nodes["poodle"],
                                                                     nodes["siamese"])
  assert graph.roots() == ["n00001740"]  # entity


def test_missing_wordnet_says_how_to_install_it(tmp_path):
  with pytest.raises(wordnet_graph.WordNetMissing, match="apt-get install -y wordnet-base"):
    wordnet_graph.open_wordnet(wordnet_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
  assert not (tmp_path / "cache").exists()
  # NLTK 3.10 also needs the sense index, which Debian ships in another package.
  (tmp_path / "data.noun").write_text("")
  with pytest.raises(wordnet_graph.WordNetMissing, match="No WordNet index.sense.*"
                                                          "wordnet-sense-index"):
    wordnet_graph.open_wordnet(wordnet_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
