"""Data: offline TFDS builders, sources, transforms and grain pipelines."""
