"""Detection on single images: preprocessing, the model, and the host-side postprocessing.

The model (any family, any runtime) gives ``(boxes, scores)``: boxes normalised
``cx, cy, w, h`` of the network input, scores per class. :func:`postprocess` keeps the
candidates above ``conf`` (of the wanted ``classes``), maps them back to the image's pixels
(undoing the letterbox or the stretch), runs per-class NMS and keeps the ``max_det`` best.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from yoloqat.core.errors import ConfigError
from yoloqat.core.evaluation import candidates
from yoloqat.core.nms import nms


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """ConfigError naming the option unless the thresholds and ``max_det`` are valid."""
    if not 0.0 <= float(conf) <= 1.0:
        raise ConfigError(f"--conf {conf!r} is not valid; expected a score in [0, 1]")
    if not 0.0 < float(iou) <= 1.0:
        raise ConfigError(f"--iou {iou!r} is not valid; expected an IoU in (0, 1]")
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise ConfigError(f"--max_det {max_det!r} is not valid; expected an integer >= 1")


def to_pixels(
    norm: np.ndarray, params: np.ndarray, input_size: int, width: int, height: int
) -> np.ndarray:
    """Normalised ``cx, cy, w, h`` of the network input -> ``x1, y1, x2, y2`` pixels of
    the ``width x height`` image (a letterbox undone with ``params`` = scale, pad_x,
    pad_y; a stretch when scale is 1 and there is no padding), clipped to the image."""
    scale, pad_x, pad_y = (float(v) for v in params[:3])
    pix = norm.astype(np.float64) * input_size
    if (scale, pad_x, pad_y) == (1.0, 0.0, 0.0):  # stretch: x and y scale apart
        sx, sy = width / input_size, height / input_size
        cx, cy, w, h = pix[:, 0] * sx, pix[:, 1] * sy, pix[:, 2] * sx, pix[:, 3] * sy
    else:
        cx, cy = (pix[:, 0] - pad_x) / scale, (pix[:, 1] - pad_y) / scale
        w, h = pix[:, 2] / scale, pix[:, 3] / scale
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    params: np.ndarray,
    *,
    input_size: int,
    image_size: tuple[int, int],
    conf: float = 0.25,
    iou: float = 0.5,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    multi_label: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``(boxes [M, 4], scores [M, C])`` -> kept ``(xyxy [n, 4] pixels, scores
    [n], class ids [n])``, best first."""
    scores = np.asarray(scores, np.float64)
    if classes is not None:  # the other classes never become candidates
        mask = np.zeros(scores.shape[1], bool)
        mask[[int(c) for c in classes if 0 <= int(c) < scores.shape[1]]] = True
        scores = np.where(mask[None, :], scores, 0.0)
    rows, cls, kept = candidates(scores, conf, multi_label)
    width, height = image_size
    xyxy = to_pixels(np.asarray(boxes)[rows], params, input_size, width, height)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    keep = nms(xywh, kept, cls, iou)
    keep = keep[np.argsort(-kept[keep], kind="stable")][:max_det]
    return xyxy[keep], kept[keep], cls[keep].astype(np.int64)


class ImageDetector:
    """Runs a predictor (a MindSpore network or a runtime) on one RGB image at a time with
    its preprocessing, and times the three stages (ms)."""

    def __init__(self, predictor: Any, *, input_size: int, normalize: str, letterbox: bool) -> None:
        self.predictor = predictor
        self.input_size = int(input_size)
        self.normalize = normalize
        self.letterbox = bool(letterbox)

    def __call__(self, image: np.ndarray, **options: Any) -> tuple[tuple, dict[str, float]]:
        from yoloqat.data.eval_transforms import preprocess_eval

        t0 = time.perf_counter()
        tensor, params = preprocess_eval(
            image, self.input_size, use_letterbox=self.letterbox, normalize_mode=self.normalize
        )
        t1 = time.perf_counter()
        boxes, scores = self.predictor(tensor[None])[:2]
        t2 = time.perf_counter()
        kept = postprocess(
            boxes[0],
            scores[0],
            params,
            input_size=self.input_size,
            image_size=(image.shape[1], image.shape[0]),
            **options,
        )
        t3 = time.perf_counter()
        speed = {
            "preprocess": (t1 - t0) * 1000,
            "inference": (t2 - t1) * 1000,
            "postprocess": (t3 - t2) * 1000,
        }
        return kept, speed
