"""Training augmentation of docs/seed.md §4.3: random placement on a gray canvas, flip, HSV jitter.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample's result
depends only on how that generator was seeded (the loader seeds it from seed, epoch and
sample position).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from yoloqat.data import MEAN, STD

#: The seed's random resize filters (PIL NEAREST, BILINEAR, BICUBIC, NEAREST, LANCZOS),
#: as their OpenCV counterparts; NEAREST appears twice, so it is drawn 2/5 of the time.
INTERPOLATIONS = (
    cv2.INTER_NEAREST,
    cv2.INTER_LINEAR,
    cv2.INTER_CUBIC,
    cv2.INTER_NEAREST,
    cv2.INTER_LANCZOS4,
)
GRAY = 128


def placement_candidates(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    jitter: float = 0.3,
    trials: int = 10,
    scale: tuple[float, float] = (0.25, 2.0),
) -> np.ndarray:
    """Random placements [trials+1, 4] of (dx, dy, nw, nh); the last row is (0, 0, W, H).

    Per trial (docs/seed.md §4.3 step 3): aspect = (W/H)·U(1-j,1+j)/U(1-j,1+j), scale = U(0.25, 2);
    the longer side of the canvas-relative box is scale·W or scale·H; the offset is drawn
    uniformly so the placed image may be cropped.
    """
    u = rng.random((trials, 5))
    lo, hi = 1.0 - jitter, 1.0 + jitter
    new_ar = (width / height) * (lo + u[:, 0] * (hi - lo)) / (lo + u[:, 1] * (hi - lo))
    scales = scale[0] + u[:, 2] * (scale[1] - scale[0])
    tall = new_ar < 1
    nh = np.where(tall, np.trunc(scales * height), 0.0)
    nw = np.where(tall, np.trunc(nh * new_ar), np.trunc(scales * width))
    nh = np.where(tall, nh, np.trunc(nw / new_ar))
    nw, nh = np.maximum(nw, 1), np.maximum(nh, 1)
    dx = np.trunc(u[:, 3] * (width - nw))
    dy = np.trunc(u[:, 4] * (height - nh))
    cand = np.stack([dx, dy, nw, nh], axis=1)
    return np.concatenate([cand, [[0, 0, width, height]]]).astype(np.int64)


def transform_boxes(
    boxes: np.ndarray,
    image_size: tuple[int, int],
    placement: np.ndarray,
    canvas: tuple[int, int],
    flip: bool,
) -> np.ndarray:
    """Boxes [..., K, 4+] through placements [..., 4]: scale, shift, mirror, clip (no drop)."""
    iw, ih = image_size
    width, height = canvas
    p = np.asarray(placement, np.float64)[..., None, :]
    b = np.asarray(boxes, np.float64)
    sx, sy = p[..., 2] / iw, p[..., 3] / ih
    x1, x2 = b[..., 0] * sx + p[..., 0], b[..., 2] * sx + p[..., 0]
    y1, y2 = b[..., 1] * sy + p[..., 1], b[..., 3] * sy + p[..., 1]
    if flip:
        x1, x2 = width - x2, width - x1
    return np.stack(
        [x1.clip(0, width), y1.clip(0, height), x2.clip(0, width), y2.clip(0, height)], axis=-1
    )


def _keep(boxes: np.ndarray) -> np.ndarray:
    return ((boxes[..., 2] - boxes[..., 0]) > 1) & ((boxes[..., 3] - boxes[..., 1]) > 1)


def place_image(
    image: np.ndarray, placement: np.ndarray, canvas: tuple[int, int], interpolation: int
) -> np.ndarray:
    """Resize ``image`` to (nw, nh) and paste it at (dx, dy) on a gray W×H canvas (cropped)."""
    dx, dy, nw, nh = (int(v) for v in placement)
    width, height = canvas
    out = np.full((height, width, 3), GRAY, np.uint8)
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + nw, width), min(dy + nh, height)
    if x1 <= x0 or y1 <= y0:
        return out
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    out[y0:y1, x0:x1] = resized[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return out


def _hsv_luts(dh: float, s: float, v: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(256, dtype=np.float64) / 255.0
    h = x + dh
    h = np.where(h > 1, h - 1, h)
    h = np.where(h < 0, h + 1, h)
    hue, sat, val = ((np.clip(c, 0, 1) * 255).astype(np.uint8) for c in (h, x * s, x * v))
    return hue, sat, val


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    hue: float = 0.1,
    saturation: float = 1.5,
    value: float = 1.5,
) -> np.ndarray:
    """HSV jitter (docs/seed.md §4.3 step 6) through 256-entry lookup tables on uint8 RGB."""
    dh = rng.uniform(-hue, hue)
    s = rng.uniform(1, saturation)
    s = s if rng.random() < 0.5 else 1 / s
    v = rng.uniform(1, value)
    v = v if rng.random() < 0.5 else 1 / v
    return apply_hsv(image, dh, s, v)


def apply_hsv(image: np.ndarray, hue_shift: float, sat_gain: float, val_gain: float) -> np.ndarray:
    """Shift hue (wrapped into [0, 1]) and scale saturation/value (clipped) of an RGB uint8
    image in ``RGB2HSV_FULL`` space, exactly as the float computation truncated to uint8."""
    lut = np.stack(_hsv_luts(hue_shift, sat_gain, val_gain), axis=-1).reshape(256, 1, 3)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
    return cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB_FULL)


def augment(
    image: np.ndarray,
    boxes: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_boxes: int = 50,
    jitter: float = 0.3,
    hue: float = 0.1,
    saturation: float = 1.5,
    value: float = 1.5,
    scale: tuple[float, float] = (0.25, 2.0),
    flip: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one image for training at canvas ``size`` = (W, H).

    Args:
        image: RGB uint8 HxWx3.
        boxes: [K, 5] x1, y1, x2, y2, class in the image's pixels.
        size: canvas (W, H) — the batch's training shape.
        rng: the sample's random generator.
        jitter, scale, flip, hue, saturation, value: the augmentation strengths; the
            defaults are the seed's (aspect jitter 0.3, scale 0.25-2, flip probability 0.5,
            HSV 0.1 / 1.5 / 1.5).

    Returns:
        (canvas RGB uint8 [H, W, 3], boxes float32 [n <= max_boxes, 5] in canvas pixels,
        clipped to it, each wider and taller than 1 px).
    """
    width, height = size
    ih, iw = image.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    boxes = boxes[rng.permutation(len(boxes))][:max_boxes]
    do_flip = bool(rng.random() < flip)
    cands = placement_candidates(rng, width, height, jitter=jitter, scale=scale)
    order = np.append(rng.permutation(len(cands) - 1), len(cands) - 1)
    moved = transform_boxes(boxes[None, :, :4], (iw, ih), cands[order], (width, height), do_flip)
    alive = _keep(moved)
    hits = np.flatnonzero(alive.any(axis=1))
    pick = int(hits[0]) if len(hits) else (len(order) - 1 if len(boxes) else 0)
    kept = alive[pick]
    out_boxes = np.concatenate([moved[pick][kept], boxes[kept, 4:5]], axis=1).astype(np.float32)
    interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    canvas = place_image(image, cands[order[pick]], (width, height), interp)
    if do_flip:
        canvas = cv2.flip(canvas, 1)
    canvas = color_jitter(canvas, rng, hue=hue, saturation=saturation, value=value)
    return canvas, out_boxes


#: Input normalisations (``data.normalize``): "imagenet" = ÷255 then ImageNet mean/std (the
#: seed's), "unit" = ÷255 only (RGB in [0, 1], Darknet's input).
NORMALIZATIONS = ("imagenet", "unit")


def check_normalize(mode: object) -> str:
    """Return ``mode`` or raise a ConfigError unless it is one of :data:`NORMALIZATIONS`."""
    if mode not in NORMALIZATIONS:
        from yoloqat.core.errors import ConfigError

        raise ConfigError(
            f"data.normalize={mode!r} is not valid; expected one of {', '.join(NORMALIZATIONS)}"
        )
    return str(mode)


@functools.lru_cache(maxsize=len(NORMALIZATIONS))
def _normalize_lut(mode: str = "imagenet") -> np.ndarray:
    x = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    if mode == "unit":
        return np.repeat(x, 3, axis=0).astype(np.float32)
    mean = np.asarray(MEAN, np.float32)[:, None]
    std = np.asarray(STD, np.float32)[:, None]
    return ((x - mean) / std).astype(np.float32)


def normalize(images: np.ndarray, mode: str = "imagenet") -> np.ndarray:
    """uint8 RGB [..., H, W, 3] -> float32 [..., 3, H, W]: ÷255, then ImageNet mean/std
    (``mode="imagenet"``, the seed's) or nothing more (``"unit"``, Darknet's RGB/255).

    A 256-entry table per channel gives the same float32 values as the arithmetic, faster.
    """
    images = np.asarray(images)
    lut = _normalize_lut(check_normalize(mode))
    out = np.empty((*images.shape[:-3], 3, *images.shape[-3:-1]), np.float32)
    planes = cv2.split(images) if images.ndim == 3 else [images[..., c] for c in range(3)]
    for c in range(3):
        out[..., c, :, :] = lut[c][planes[c]]
    return out
