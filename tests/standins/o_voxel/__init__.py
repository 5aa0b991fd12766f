from . import postprocess  # noqa: F401
