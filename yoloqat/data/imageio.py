"""Robust image reading: any common file becomes a 3-channel 8-bit RGB array.

EXIF orientation is deliberately ignored: COCO boxes refer to the stored pixel layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from yoloqat.core.contracts.dataset import UnreadableImageError

_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION


class ImageReadError(UnreadableImageError):
    """An image file is missing, empty, truncated or not decodable (the message says which).

    The contract's :class:`~yoloqat.core.contracts.dataset.UnreadableImageError`: a source's
    ``load`` may let it propagate."""


def _jpeg_truncated(data: bytes) -> bool:
    # A complete JPEG ends its last scan with an EOI marker (FFD9). Entropy-coded data
    # never contains FFD9 (0xFF bytes are stuffed), and an EXIF thumbnail's EOI lies
    # before the main image's first SOS, so "no EOI after the last SOS" means truncated.
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Decoded OpenCV array (gray, gray+alpha, BGR, BGRA; 8/16-bit, float) -> RGB uint8."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha: the alpha channel is dropped
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image[:, :, :4], cv2.COLOR_BGRA2RGB)


def _pil_fallback(path: Path) -> np.ndarray | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return None
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception:
        return None


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as an HxWx3 uint8 RGB array.

    Grayscale, RGBA, palette and 16-bit files are converted; EXIF orientation is not applied.
    Raises :class:`ImageReadError` naming the problem for a missing, zero-byte, truncated
    or undecodable file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not data:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")
    if data[:3] == b"\xff\xd8\xff" and _jpeg_truncated(data):
        raise ImageReadError(f"image file is truncated (JPEG without end marker): {path}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS)
    if image is None:
        image = _pil_fallback(path)
        if image is None:
            raise ImageReadError(f"image file is corrupt or not an image: {path}")
        return np.ascontiguousarray(image)
    if image.size == 0:
        raise ImageReadError(f"image has zero size: {path}")
    return to_rgb8(image)
