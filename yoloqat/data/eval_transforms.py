"""Evaluation preprocessing (docs/seed.md §5): stretch resize to the test shape, or a letterbox."""

from __future__ import annotations

import cv2
import numpy as np

from yoloqat.data.augment import GRAY, normalize


def eval_interpolation(orig_size: tuple[int, int], target_size: tuple[int, int]) -> int:
    """The seed's rule: bicubic when both target sides are larger than the image's,
    nearest when both are smaller, bilinear otherwise. Sizes are (w, h)."""
    (ow, oh), (tw, th) = orig_size, target_size
    if tw > ow and th > oh:
        return cv2.INTER_CUBIC
    if tw < ow and th < oh:
        return cv2.INTER_NEAREST
    return cv2.INTER_LINEAR


def stretch(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` = (W, H), ignoring its aspect ratio."""
    ih, iw = image.shape[:2]
    if (iw, ih) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=eval_interpolation((iw, ih), size))


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit the image inside ``size`` keeping its aspect, centred on gray.

    Returns (canvas uint8 [H, W, 3], params float32 [3] = (scale, pad_x, pad_y)); a point of
    the canvas maps back to the image by ``(x - pad_x) / scale``.
    """
    width, height = size
    ih, iw = image.shape[:2]
    scale = min(width / iw, height / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    px, py = (width - nw) // 2, (height - nh) // 2
    out = np.full((height, width, 3), GRAY, np.uint8)
    resized = cv2.resize(image, (nw, nh), interpolation=eval_interpolation((iw, ih), (nw, nh)))
    out[py : py + nh, px : px + nw] = resized
    return out, np.array([scale, px, py], np.float32)


def preprocess_eval(
    image: np.ndarray,
    testing_shape: int | tuple[int, int] = 416,
    *,
    use_letterbox: bool = False,
    normalize_mode: str = "imagenet",
) -> tuple[np.ndarray, np.ndarray]:
    """One image -> (float32 [3, H, W] normalised, letterbox params (1, 0, 0) when stretching).

    ``normalize_mode``: "imagenet" (the seed's mean/std) or "unit" (RGB/255, Darknet's).
    """
    size = (testing_shape, testing_shape) if isinstance(testing_shape, int) else testing_shape
    if use_letterbox:
        canvas, params = letterbox(image, size)
    else:
        canvas, params = stretch(image, size), np.array([1.0, 0.0, 0.0], np.float32)
    return normalize(canvas, normalize_mode), params
