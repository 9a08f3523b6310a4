"""Finished recipe searches: each chose one setting of a config on the validation holdout, and
its result file in `experiments/results/recipe_probe_*.md` is what the config cites. Kept
runnable (`python -m experiments.recipe_searches.NAME`), outside the studies and CI."""
