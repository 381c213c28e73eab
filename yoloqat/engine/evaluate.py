"""Run a predictor over a dataset's val split and score it with pycocotools (spec §5)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.evaluation import DetectionEngine, EvalResult


def letterbox_transform(params: np.ndarray, size: int) -> Any:
    """Map normalised boxes of a letterboxed input back to original pixels."""
    scale, pad_x, pad_y = (float(v) for v in params[:3])

    def transform(norm: np.ndarray) -> np.ndarray:
        out = norm * size
        out[:, 0] = (out[:, 0] - pad_x) / scale
        out[:, 1] = (out[:, 1] - pad_y) / scale
        out[:, 2:4] = out[:, 2:4] / scale
        return out

    return transform


_GT_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], Any]] = weakref.WeakKeyDictionary()


def ground_truth(source: Any, category_ids: Sequence[int]) -> Any:
    """The pycocotools ground truth of ``source.annotations()`` (built once per source)."""
    from yoloqat.core.ground_truth import coco_ground_truth

    key = tuple(int(c) for c in category_ids)
    try:
        cached = _GT_CACHE.get(source)
    except TypeError:  # not weak-referenceable: build it every time
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    coco = coco_ground_truth(source.annotations(), key)
    with contextlib.suppress(TypeError):
        _GT_CACHE[source] = (key, coco)
    return coco


def _loader(
    source: Any,
    batch_size: int,
    testing_shape: int,
    letterbox: bool,
    num_workers: int,
    normalize: str = "imagenet",
) -> Any:
    from yoloqat.data.loader import EvalLoader

    return EvalLoader(
        source,
        batch_size=batch_size,
        testing_shape=testing_shape,
        letterbox=letterbox,
        num_workers=num_workers,
        normalize=normalize,
    )


def load_batches(
    source: Any,
    *,
    testing_shape: int,
    batch_size: int = 1,
    letterbox: bool = False,
    normalize: str = "imagenet",
) -> list[dict[str, Any]]:
    """Every eval batch of ``source``, decoded and resized once (for repeated evaluation)."""
    return list(_loader(source, batch_size, testing_shape, letterbox, 1, normalize))


def evaluate_source(
    predictor: Any,
    source: Any,
    category_ids: list[int],
    *,
    testing_shape: int = 416,
    batch_size: int = 1,
    letterbox: bool = False,
    score_threshold: float = 0.001,
    nms_threshold: float = 0.5,
    multi_label: bool = False,
    num_workers: int = 1,
    output_dir: str | Path | None = None,
    description: str = "eval",
    batches: list[dict[str, Any]] | None = None,
    defer_write_errors: bool = False,
    normalize: str = "imagenet",
) -> EvalResult:
    """Detect on every image of ``source`` and evaluate against its annotations.

    The ground truth is built from ``source.annotations()`` (:func:`ground_truth`), the
    category id of class index ``i`` being ``category_ids[i]``.

    Writes ``predict_<time>.json`` (COCO results) and ``eval_<time>.json`` (the 12 numbers
    and the printed summary) into ``output_dir`` when given. ``batches``: the loader's
    batches decoded beforehand (:func:`load_batches`), to evaluate several networks on the
    same images without decoding them again. ``defer_write_errors``: a failure to write
    the files (full disk) goes into ``result.extra["write_error"]`` instead of being
    raised, so the caller can print the numbers before failing. ``letterbox`` and
    ``normalize`` are the input preprocessing the network expects (``eval.letterbox`` and
    ``data.normalize`` of its config, :func:`yoloqat.engine.inference.preprocessing`).
    """
    from yoloqat.core.detector import check_input_shape

    check_input_shape(testing_shape, testing_shape)
    engine = DetectionEngine(
        category_ids,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        multi_label=multi_label,
    )
    loader: Any = batches
    if loader is None:
        loader = _loader(source, batch_size, testing_shape, letterbox, num_workers, normalize)
    total = (len(source) + batch_size - 1) // batch_size
    with events.task(description, total) as bar:
        for batch in loader:
            outputs = predictor(batch["image"])
            transforms = None
            if letterbox and "letterbox" in batch:
                transforms = [letterbox_transform(p, testing_shape) for p in batch["letterbox"]]
            engine.add_batch(
                outputs, batch["image_id"], batch["orig_size"], box_transforms=transforms
            )
            bar.advance(1)
    if not engine.image_ids:
        from yoloqat.core.errors import DataError

        raise DataError(
            f"none of the {len(source)} image(s) to evaluate could be read; no AP to report",
            hint="see the 'skipped unreadable image' warnings above",
        )
    gt = ground_truth(source, category_ids)
    result = engine.evaluate(gt, image_ids=engine.image_ids or None)
    result.extra.update(testing_shape=testing_shape, letterbox=letterbox, normalize=normalize)
    if output_dir is not None:
        from yoloqat.core.atomic import write_json
        from yoloqat.core.errors import RuntimeFailure

        out = Path(output_dir)
        stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H_%M_%S")
        try:  # a full disk must not cost the numbers: the caller prints them, then fails
            out.mkdir(parents=True, exist_ok=True)
            engine.write_json(out / f"predict_{stamp}.json")
            write_json(out / f"eval_{stamp}.json", result.to_dict())
            result.extra["results_file"] = str(out / f"predict_{stamp}.json")
            result.extra["eval_file"] = str(out / f"eval_{stamp}.json")
        except (OSError, RuntimeFailure) as exc:
            if isinstance(exc, OSError):
                exc = RuntimeFailure(f"could not write to {out}: {exc.strerror or exc}")
            if not defer_write_errors:
                raise exc from None
            result.extra["write_error"] = exc
    return result


class Subset:
    """The first ``n`` images of a source (same interface)."""

    def __init__(self, source: Any, n: int | None) -> None:
        self._source = source
        self._n = len(source) if n is None else min(n, len(source))

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)
