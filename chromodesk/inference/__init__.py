"""Torch lives here (and in training/), never Qt."""
