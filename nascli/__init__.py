"""nascli: neural architecture search from the command line (`nas`) and from Python (`nascli.api`)."""

__version__ = "0.1.0"
