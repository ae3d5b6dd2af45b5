"""nascli: a command-line runner for neural architecture search."""

__version__ = "0.1.0"
