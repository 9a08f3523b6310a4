"""Flax NNX models. No training logic lives here."""
