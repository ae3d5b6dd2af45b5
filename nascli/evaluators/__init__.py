"""Evaluators: turn an architecture (and a budget) into metrics, by training, look-up or proxy."""

from nascli.evaluators import proxy, supernet, tabular, train  # noqa: E402,F401  (importing a module registers its evaluator)
