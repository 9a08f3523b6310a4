"""The studies: each runs as `python -m experiments.NAME` from the repository's root and writes its
report into `experiments/results/` (docs/studies.md)."""
