"""Detection on single images: preprocessing, the model, and the host-side postprocessing.

The model (any family, any runtime) gives ``(boxes, scores)``: boxes normalised
``cx, cy, w, h`` of the network input, scores per class. :func:`postprocess` keeps the
candidates above ``conf`` (of the wanted ``classes``), maps them back to the image's pixels
(undoing the letterbox or the stretch), runs per-class NMS and keeps the ``max_det`` best.

A model exported with its NMS in the graph (``export --nms``) gives the final
``detections [B, max_det, 6]`` (``x1, y1, x2, y2`` pixels of the input, score, class);
:class:`InGraphNms` wraps its runtime, and :func:`postprocess_detections` only maps its boxes
to the image and applies ``conf``/``classes``/``max_det`` to what the graph kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from yoloqat.core.errors import ConfigError
from yoloqat.core.nms import nms
from yoloqat.core.scoring import candidates


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
    return _clip(out, width, height)


def _clip(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
    return xyxy


def input_to_image(
    xyxy: np.ndarray, params: np.ndarray, input_size: int, width: int, height: int
) -> np.ndarray:
    """``x1, y1, x2, y2`` pixels of the network input -> pixels of the ``width x height``
    image, as :func:`to_pixels` maps them, clipped to the image."""
    scale, pad_x, pad_y = (float(v) for v in params[:3])
    out = np.asarray(xyxy, np.float64).reshape(-1, 4).copy()
    if (scale, pad_x, pad_y) == (1.0, 0.0, 0.0):
        out[:, 0::2] *= width / input_size
        out[:, 1::2] *= height / input_size
    else:
        out[:, 0::2] = (out[:, 0::2] - pad_x) / scale
        out[:, 1::2] = (out[:, 1::2] - pad_y) / scale
    return _clip(out, width, height)


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


def postprocess_detections(
    detections: np.ndarray,
    params: np.ndarray,
    *,
    input_size: int,
    image_size: tuple[int, int],
    conf: float = 0.25,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    **_ignored: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's in-graph NMS output ``[max_det, 6]`` -> ``(xyxy [n, 4] image pixels,
    scores [n], class ids [n])``: the rows scoring at least ``conf`` (never the padding
    rows, score -1) of the wanted ``classes``, at most ``max_det``, best first.

    The graph's own thresholds (baked in at export) were applied already: a lower ``conf``
    or another IoU threshold cannot bring back what it dropped (:func:`nms_notes`)."""
    rows = np.asarray(detections, np.float64).reshape(-1, 6)
    keep = rows[:, 4] >= max(float(conf), 0.0)
    if classes is not None:
        keep &= np.isin(rows[:, 5].astype(np.int64), [int(c) for c in classes])
    rows = rows[keep]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_det]
    width, height = image_size
    xyxy = input_to_image(rows[:, :4], params, input_size, width, height)
    return xyxy, rows[:, 4], rows[:, 5].astype(np.int64)


def nms_settings(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The thresholds baked into a model exported with NMS in the graph (``conf``, ``iou``,
    ``max_det``, from its ``decode`` metadata), or None for a model without."""
    import json

    if metadata.get("nms") != "true":
        return None
    try:
        settings = json.loads(metadata.get("decode") or "{}").get("nms") or {}
    except (ValueError, AttributeError):
        settings = {}
    return {k: settings[k] for k in ("conf", "iou", "max_det") if k in settings}


def nms_notes(settings: dict[str, Any], conf: float, iou: float, max_det: int) -> list[str]:
    """What of ``conf``/``iou``/``max_det`` a model with in-graph NMS cannot honour."""
    notes = []
    if "conf" in settings and conf < settings["conf"]:
        notes.append(
            f"conf {conf} is below the model's in-graph threshold {settings['conf']}: "
            f"only scores >= {settings['conf']} are found"
        )
    if "iou" in settings and iou != settings["iou"]:
        notes.append(
            f"iou {iou} is not used: the model's NMS runs in the graph at iou {settings['iou']}"
        )
    if "max_det" in settings and max_det > settings["max_det"]:
        notes.append(f"the model gives at most {settings['max_det']} detections per image")
    return notes


class InGraphNms:
    """A runtime over a model exported with NMS in the graph, seen as every other predictor:
    ``model(images)`` returns the decoded form ``[boxes [B, K, 4], scores [B, K, C]]`` (each
    kept detection as normalised ``cx, cy, w, h`` and a score for its class only; padding
    rows score -1 for every class), so evaluation and benchmarks take it unchanged;
    :meth:`detections` gives the graph's own output. Other attributes are the runtime's."""

    def __init__(self, runtime: Any, num_classes: int) -> None:
        self.runtime = runtime
        self.num_classes = int(num_classes)

    def __getattr__(self, name: str) -> Any:
        if name == "runtime":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.runtime, name)

    def detections(self, images: np.ndarray) -> np.ndarray:
        """The model's ``[B, max_det, 6]`` output for ``images``."""
        outputs = self.runtime(images)
        dets = np.asarray(outputs[0])
        if len(outputs) != 1 or dets.ndim != 3 or dets.shape[-1] != 6:
            from yoloqat.core.errors import DataError

            raise DataError(
                f"{self.runtime.path}: its metadata says NMS in the graph but it gave outputs "
                f"{[list(np.shape(o)) for o in outputs]}; expected detections [B, K, 6]"
            )
        return dets

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        dets = self.detections(images).astype(np.float32)
        size = float(self.runtime.input_size)
        xyxy = dets[..., :4] / size
        boxes = np.concatenate(
            [(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], -1
        )
        real = dets[..., 4] >= 0
        cls = np.where(real, dets[..., 5], 0).astype(np.int64).clip(0, self.num_classes - 1)
        scores = np.full((*dets.shape[:2], self.num_classes), -1.0, np.float32)
        scores[real] = 0.0
        b, k = np.nonzero(real)
        scores[b, k, cls[b, k]] = dets[b, k, 4]
        return [boxes.astype(np.float32), scores]


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
        size = (image.shape[1], image.shape[0])
        if isinstance(self.predictor, InGraphNms):
            detections = self.predictor.detections(tensor[None])
            t2 = time.perf_counter()
            kept = postprocess_detections(
                detections[0], params, input_size=self.input_size, image_size=size, **options
            )
        else:
            boxes, scores = self.predictor(tensor[None])[:2]
            t2 = time.perf_counter()
            kept = postprocess(
                boxes[0], scores[0], params, input_size=self.input_size, image_size=size, **options
            )
        t3 = time.perf_counter()
        speed = {
            "preprocess": (t1 - t0) * 1000,
            "inference": (t2 - t1) * 1000,
            "postprocess": (t3 - t2) * 1000,
        }
        return kept, speed
