"""Evaluators: turn an architecture (and a budget) into metrics, by training, look-up or proxy."""
