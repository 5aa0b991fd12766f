"""The prepared input image a job carries: uint8 RGBA rows top to bottom, written by the add-on."""
from __future__ import annotations

import base64
import os

import numpy as np

from . import png
from .protocol import ErrorCode, JobError


def load_rgba(path: str) -> np.ndarray:
    try:
        rgba = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise JobError(ErrorCode.BAD_INPUT, f"cannot read the prepared image {os.path.basename(path)}: {exc}") from None
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise JobError(ErrorCode.BAD_INPUT, f"prepared image must be uint8 HxWx4, got {rgba.dtype} {rgba.shape}")
    return rgba


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG of the image; RGB when the alpha channel is fully opaque (a quarter fewer bytes)."""
    return png.encode_png(rgba if rgba[..., 3].min() < 255 else np.ascontiguousarray(rgba[..., :3]))


def data_uri(png_data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_data).decode("ascii")
