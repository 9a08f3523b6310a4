"""Which WordNet concept each class of the data sets mll_jax knows stands for.

Each data set maps its class names, in label order, to a WordNet noun synset (`"cat.n.01"`), or,
where WordNet has no such concept, to a new node under a synset (`"new:fish.n.01"`, CIFAR-100's
`aquarium_fish`). Senses are chosen by hand where the first sense is not the picture (CIFAR's
`seal` is the animal, seal.n.09, not the wax). ImageNet-1k's classes are WordNet ids already; its
list is read from TFDS's own `labels.txt`, which ships with tensorflow-datasets.
"""

NEW_PREFIX = "new:"

ANIMAL_MNIST = {name: f"{name}.n.01" for name in (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")}

# Digit synsets of WordNet: `zero.n.02` (zero.n.01 is "nothing"); the others are `<name>.n.01`.
DIGITS = {str(i): f"{word}.n.0{2 if i == 0 else 1}" for i, word in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}

CIFAR10 = {"airplane": "airplane.n.01", "automobile": "car.n.01", "bird": "bird.n.01",
           "cat": "cat.n.01", "deer": "deer.n.01", "dog": "dog.n.01", "frog": "frog.n.01",
           "horse": "horse.n.01", "ship": "ship.n.01", "truck": "truck.n.01"}

_CIFAR100_SENSES = {  # class -> synset where `<class>.n.01` is not the pictured thing
    "aquarium_fish": "new:fish.n.01", "beaver": "beaver.n.07", "boy": "male_child.n.01",
    "castle": "castle.n.02", "cloud": "cloud.n.02", "couch": "sofa.n.01",
    "dolphin": "dolphin.n.02", "flatfish": "flatfish.n.02", "girl": "female_child.n.01",
    "leopard": "leopard.n.02", "lobster": "lobster.n.02", "maple_tree": "maple.n.02",
    "mushroom": "mushroom.n.05", "oak_tree": "oak.n.02", "otter": "otter.n.02",
    "palm_tree": "palm.n.03", "pickup_truck": "pickup.n.01", "pine_tree": "pine.n.01",
    "plate": "plate.n.04", "possum": "opossum.n.02", "raccoon": "raccoon.n.02", "ray": "ray.n.07",
    "seal": "seal.n.09", "shrew": "shrew.n.02", "skunk": "skunk.n.04", "table": "table.n.02",
    "television": "television_receiver.n.01", "tiger": "tiger.n.02", "trout": "trout.n.02",
    "turtle": "turtle.n.02", "whale": "whale.n.02", "willow_tree": "willow.n.01",
}
_CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()
CIFAR100 = {name: _CIFAR100_SENSES.get(name, f"{name}.n.01") for name in _CIFAR100_CLASSES}


def imagenet2012() -> dict[str, str]:
  """ImageNet-1k: WordNet id (`n01440764`) -> the same id, in TFDS's label order."""
  import tensorflow_datasets as tfds
  path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
  return {wnid: wnid for wnid in path.read_text().split()}


def known() -> dict[str, dict[str, str]]:
  """Data set name (as mll_jax's data sources call it) -> class name -> concept."""
  return {"animal_mnist": ANIMAL_MNIST, "mnist": DIGITS, "digits": DIGITS, "cifar10": CIFAR10,
          "cifar100": CIFAR100, "imagenet2012": imagenet2012()}
