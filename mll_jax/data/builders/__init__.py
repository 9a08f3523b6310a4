"""The project's own TFDS builders for data sets that must work with no network."""
