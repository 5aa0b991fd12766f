"""Stand-in for the parts of torch the local backend touches."""
from . import cuda, version  # noqa: F401

__version__ = "2.6.0+standin"


def manual_seed(seed):
    return None


class no_grad:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn
