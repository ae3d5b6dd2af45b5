"""Search strategies: ask for the next architecture, tell the result, save and restore state."""

from nascli.strategies import bo, darts, evolution, hyperband, listed, local, nsga2, random, reinforce, spos  # noqa: E402,F401  (registers them)
