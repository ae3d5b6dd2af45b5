"""nascli: neural architecture search from the command line (`nas`) and from Python (`nascli.search`, ...)."""

from nascli.errors import UserError

__version__ = "0.1.0"
__all__ = ["Run", "UserError", "find", "load_run", "retrain", "search"]
API = ("Run", "find", "load_run", "retrain", "search")


def __getattr__(name: str) -> object:
    """The Python API (nascli.api), imported on first use so that `nas --help` and `import nascli.errors` stay fast."""
    if name in API:
        from nascli import api

        return getattr(api, name)
    raise AttributeError(f"module 'nascli' has no attribute {name!r}")
