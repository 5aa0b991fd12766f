import os

from _record import record


class OutOfMemoryError(RuntimeError):
    pass


def is_available() -> bool:
    return os.environ.get("TRELLIS_STANDIN_NO_CUDA") != "1"


def device_count() -> int:
    return 1 if is_available() else 0


def get_device_name(index=0) -> str:
    return "Stand-in GPU 24GB"


def mem_get_info(index=0):
    return (20 * 2**30, 24 * 2**30)


def set_device(index) -> None:
    record("torch.cuda.set_device", index=index)


def empty_cache() -> None:
    record("torch.cuda.empty_cache")
