"""Run a predictor over a dataset's val split and score it with pycocotools (docs/seed.md §5)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.scoring import DetectionEngine, EvalResult


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
    class_names: Sequence[str] | None = None,
    details: bool | None = None,
    info: dict[str, Any] | None = None,
) -> EvalResult:
    """Detect on every image of ``source`` and evaluate against its annotations.

    The ground truth is built from ``source.annotations()`` (:func:`ground_truth`), the
    category id of class index ``i`` being ``category_ids[i]`` (named ``class_names[i]``
    in the per-class table). The three stages are timed (``result.speed``: ms per image;
    the first batch, which compiles and warms up, is left out when there are more).

    ``details`` (default: when writing) adds what reports show: P/R at the best F1, the
    curves and the confusion matrix (training-time validation goes without). With
    ``output_dir`` the report is written into a new run folder inside it
    (:func:`yoloqat.engine.eval_report.write_report`: ``predictions.json`` in COCO result
    form, ``pr_curve.png``, ``confusion_matrix.png``, ``eval.json``). ``info``: entries
    (e.g. ``model``, ``data``) added to ``result.extra`` before writing. ``batches``: the
    loader's batches decoded beforehand (:func:`load_batches`), to evaluate several
    networks on the same images without decoding them again. ``defer_write_errors``: a
    failure to write the files (full disk) goes into ``result.extra["write_error"]``
    instead of being raised, so the caller can print the numbers before failing.
    ``letterbox`` and ``normalize`` are the input preprocessing the network expects
    (``eval.letterbox`` and ``data.normalize`` of its config,
    :func:`yoloqat.engine.inference.preprocessing`).
    """
    import time

    from yoloqat.core.detector import check_input_shape

    check_input_shape(testing_shape, testing_shape)
    if details is None:
        details = output_dir is not None
    stamp = None
    if output_dir is not None:  # the run folder is named by the evaluation's start
        from yoloqat.engine.eval_report import timestamp

        stamp = timestamp()
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
    timings: list[tuple[int, float, float, float]] = []  # images, seconds per stage
    with events.task(description, total) as bar:
        clock = time.perf_counter()
        for batch in loader:
            loaded = time.perf_counter()
            outputs = predictor(batch["image"])
            inferred = time.perf_counter()
            transforms = None
            if letterbox and "letterbox" in batch:
                transforms = [letterbox_transform(p, testing_shape) for p in batch["letterbox"]]
            engine.add_batch(
                outputs, batch["image_id"], batch["orig_size"], box_transforms=transforms
            )
            done = time.perf_counter()
            timings.append(
                (len(batch["image_id"]), loaded - clock, inferred - loaded, done - inferred)
            )
            bar.advance(1)
            clock = time.perf_counter()
    if not engine.image_ids:
        from yoloqat.core.errors import DataError

        raise DataError(
            f"none of the {len(source)} image(s) to evaluate could be read; no AP to report",
            hint="see the 'skipped unreadable image' warnings above",
        )
    gt = ground_truth(source, category_ids)
    started = time.perf_counter()
    result = engine.evaluate(
        gt, image_ids=engine.image_ids or None, class_names=class_names, details=details
    )
    result.speed = stage_speed(timings, batch_size)
    result.speed["cocoeval_s"] = time.perf_counter() - started
    result.extra.update(
        testing_shape=testing_shape,
        letterbox=letterbox,
        normalize=normalize,
        score_threshold=float(score_threshold),
        nms_threshold=float(nms_threshold),
        multi_label=bool(multi_label),
    )
    result.extra.update(info or {})
    if output_dir is not None:
        from yoloqat.core.errors import ConfigError, RuntimeFailure
        from yoloqat.engine.eval_report import write_report

        try:  # a full disk must not cost the numbers: the caller prints them, then fails
            write_report(result, engine, output_dir, stamp=stamp)
        except (OSError, RuntimeFailure, ConfigError) as exc:
            if isinstance(exc, ConfigError):  # the run folder (checked writable at start)
                exc = RuntimeFailure(exc.message, hint=exc.hint)
            elif not isinstance(exc, RuntimeFailure):
                exc = RuntimeFailure(f"could not write to {output_dir}: {exc.strerror or exc}")
            if not defer_write_errors:
                raise exc from None
            result.extra["write_error"] = exc
    return result


def stage_speed(timings: Sequence[tuple[int, float, float, float]], batch: int) -> dict[str, float]:
    """Milliseconds per image of each stage from ``(images, preprocess s, inference s,
    postprocess s)`` per batch. With more than one batch the first is left out (it compiles
    the graph and warms up the runtime) and its total reported as ``warmup_ms``."""
    kept = list(timings[1:]) if len(timings) > 1 else list(timings)
    images = max(sum(t[0] for t in kept), 1)
    out = {
        name: 1000.0 * sum(t[i] for t in kept) / images
        for i, name in enumerate(("preprocess", "inference", "postprocess"), start=1)
    }
    out["batch"] = float(batch)
    if len(timings) > 1:
        out["warmup_ms"] = 1000.0 * sum(timings[0][1:])
    return out


class Subset:
    """The first ``n`` images of a source (same interface)."""

    def __init__(self, source: Any, n: int | None) -> None:
        self._source = source
        self._n = len(source) if n is None else min(n, len(source))

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


def model_preprocessing(
    cfg: dict[str, Any], meta: dict[str, Any], predictor: Any, *, explicit: bool
) -> dict[str, Any]:
    """The input preprocessing of the model evaluated: normalisation and resize.

    An ONNX model's own metadata (``normalize``, ``letterbox``, written by ``export``) wins;
    else the checkpoint's stored config (or the explicit ``--config``).
    """
    from yoloqat.engine.inference import effective_config, preprocessing

    prep = preprocessing(effective_config(cfg, meta, explicit=explicit))
    stored = getattr(predictor, "metadata", None) or {}
    if stored.get("normalize"):
        prep["normalize"] = str(stored["normalize"])
    if stored.get("letterbox") in ("true", "false"):
        prep["letterbox"] = stored["letterbox"] == "true"
    return prep


def dataset_overrides(
    cfg: dict[str, Any],
    data_dir: str | None,
    images: str | None,
    annotations: str | None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Point the config's dataset at ``--data_dir`` / ``--dataset`` or ``--images/--annotations``.

    ``--images/--annotations`` switch to a generic COCO-format validation set. ``--dataset``
    names the plugin (its block replaced, or kept when it names the same plugin) and
    ``--data_dir`` sets its ``data_dir``. ``--data_dir`` alone sets ``dataset.data_dir`` of
    the config's dataset (with no dataset block, :func:`eval_dataset` tells the plugin from
    the folder layout).
    """
    from yoloqat.core.errors import UsageError

    if (images is None) != (annotations is None):
        raise UsageError("--images and --annotations go together")
    if images is not None:
        if data_dir is not None or dataset is not None:
            raise UsageError("give --data_dir/--dataset or --images/--annotations, not both")
        cfg["dataset"] = {"name": "coco", "val_images": images, "val_annotations": annotations}
        return cfg
    block = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else None
    if dataset is not None:
        block = dict(block) if block and block.get("name") == dataset else {"name": dataset}
    if block is not None and data_dir is not None:
        block = {**block, "data_dir": data_dir}
    if block is not None:
        cfg["dataset"] = block
    return cfg


def eval_dataset(
    cfg: dict[str, Any],
    meta: dict[str, Any],
    *,
    explicit: bool,
    data_dir: str | None,
    images: str | None,
    annotations: str | None,
    overrides: Sequence[str] = (),
    dataset: str | None = None,
) -> Any:
    """The dataset to evaluate on, built.

    Its config: without an explicit ``--config``, the one stored in the checkpoint (so a
    checkpoint evaluates on the data it was trained for, ``--data_dir`` pointing elsewhere);
    else ``cfg``. Then the dataset flags and ``--set`` overrides. With no dataset block
    at all (an ONNX model without ``--config``), ``--data_dir``'s layout names the plugin.
    """
    from yoloqat.engine.pipeline import build_dataset

    return build_dataset(
        eval_data_config(
            cfg,
            meta,
            explicit=explicit,
            data_dir=data_dir,
            images=images,
            annotations=annotations,
            overrides=overrides,
            dataset=dataset,
        )
    )


def eval_data_config(
    cfg: dict[str, Any],
    meta: dict[str, Any],
    *,
    explicit: bool,
    data_dir: str | None,
    images: str | None,
    annotations: str | None,
    overrides: Sequence[str] = (),
    dataset: str | None = None,
) -> dict[str, Any]:
    """The config :func:`eval_dataset` builds the dataset from (its ``dataset`` block
    resolved as described there)."""
    import copy

    from yoloqat.core.config import apply_overrides
    from yoloqat.core.errors import UsageError
    from yoloqat.data.layout import detect_dataset
    from yoloqat.engine.inference import effective_config

    base = copy.deepcopy(effective_config(cfg, meta, explicit=explicit))
    base = dataset_overrides(base, data_dir, images, annotations, dataset)
    if not isinstance(base.get("dataset"), dict) and data_dir is not None:
        detected = detect_dataset(data_dir)
        if detected is None:
            raise UsageError(
                f"cannot tell the dataset layout of --data_dir {data_dir}",
                hint="name the plugin with --dataset (coco2014, coco, yolo, voc, ...)",
            )
        base["dataset"] = detected
    base = apply_overrides(base, list(overrides))
    if not isinstance(base.get("dataset"), dict):
        raise UsageError(
            "no dataset to evaluate on",
            hint="give --data_dir DIR (and --dataset NAME) or --images/--annotations",
        )
    return base


#: ``eval`` section keys that evaluate_source takes as arguments of the same name.
EVAL_KEYS = ("score_threshold", "nms_threshold", "multi_label")


def eval_settings(config: dict[str, Any] | None, **given: Any) -> dict[str, Any]:
    """Score threshold, NMS threshold and multi-label: what is given (not None), else the
    config's ``eval`` section, else the schema's defaults (0.001, 0.5, single label)."""
    from yoloqat.core.config import read

    out = {}
    for key in EVAL_KEYS:
        value = given.get(key)
        out[key] = read(config, f"eval.{key}") if value is None else value
    return out


def evaluate_model(
    model: Any,
    *,
    data_dir: str | None = None,
    dataset: str | None = None,
    images: str | None = None,
    annotations: str | None = None,
    config: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    imgsz: int | None = None,
    batch: int = 1,
    conf: float | None = None,
    iou: float | None = None,
    multi_label: bool | None = None,
    letterbox: bool | None = None,
    num_workers: int = 1,
    output: str | Path | None = None,
    defer_write_errors: bool = False,
) -> EvalResult:
    """Evaluate a loaded :class:`~yoloqat.engine.model.Model` on a dataset (pycocotools).

    The data: ``images``/``annotations`` (any COCO data), else ``dataset``/``data_dir``, else
    the checkpoint's own dataset (``data_dir`` pointing it elsewhere); an exported model
    without ``config`` tells the plugin from ``data_dir``'s layout. Thresholds (``conf``,
    ``iou``, ``multi_label``) default to the ``eval`` section of ``config`` (or the
    checkpoint's, with ``overrides`` applied); the input size to the model's; the
    preprocessing to the model's (``letterbox`` overrides it).

    The result carries the report: a header (``extra["model"]``, ``extra["data"]``), the
    per-class table (``per_class``, ``best_f1``), the curves and confusion matrix, and the
    speed of each stage. With ``output`` it is written into a new run folder there
    (:mod:`yoloqat.engine.eval_report`), whose path is ``extra["folder"]``.
    """
    from yoloqat.core.config import apply_overrides
    from yoloqat.core.detector import check_input_shape
    from yoloqat.engine.pipeline import build_dataset

    explicit = config is not None
    cfg = dict(config) if config is not None else {}
    meta = model.meta if model.kind == "checkpoint" else {}
    own = cfg if explicit else apply_overrides(dict(model.config or {}), list(overrides))
    settings = eval_settings(own, score_threshold=conf, nms_threshold=iou, multi_label=multi_label)
    size = int(imgsz or model.input_size)
    check_input_shape(size, size, getattr(model.network, "input_multiple", 32))
    data_cfg = eval_data_config(
        cfg,
        meta,
        explicit=explicit,
        data_dir=data_dir,
        images=images,
        annotations=annotations,
        overrides=overrides,
        dataset=dataset,
    )
    data = build_dataset(data_cfg)
    source = data.val_source()
    return evaluate_source(
        model.predictor,
        source,
        data.category_ids,
        testing_shape=size,
        batch_size=batch,
        letterbox=model.letterbox if letterbox is None else bool(letterbox),
        normalize=model.normalize,
        num_workers=num_workers,
        output_dir=output,
        defer_write_errors=defer_write_errors,
        class_names=data.class_names,
        details=True,
        info={"model": describe_model(model), "data": describe_data(data_cfg, source)},
        **settings,
    )


def describe_model(model: Any) -> dict[str, Any]:
    """The report header's model entry: its file, kind, what runs it, its classes."""
    if model.kind == "checkpoint":
        runs = "MindSpore"
        quantized: bool | None = bool(model.meta.get("quantized"))
    else:
        runs = str(getattr(model.predictor, "name", "") or "runtime")
        quantized = {"true": True, "false": False}.get(str(model.meta.get("int8", "")).lower())
    return {
        "path": str(model.path),
        "name": Path(model.path).name,
        "kind": model.kind,
        "runtime": runs,
        "quantized": quantized,
        "classes": len(model.names),
    }


def describe_data(data_cfg: dict[str, Any], source: Any) -> dict[str, Any]:
    """The report header's data entry: the dataset plugin and where its val split is."""
    block = data_cfg["dataset"] if isinstance(data_cfg.get("dataset"), dict) else {}
    location = getattr(source, "origin", None) or getattr(source, "annotation_file", None)
    if not location and len(source):
        with contextlib.suppress(Exception):  # informative only
            location = str(Path(source.image_path(0)).parent)
    return {"name": block.get("name"), "location": str(location) if location else None}
