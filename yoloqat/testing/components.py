"""Per-kind conformance checks: build from the factory, check the contract, exercise it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from yoloqat.core.contracts import CheckedDataset, check_component

#: The toy backbone maps a head is checked on: channels and strides of four maps (a head
#: reads those it needs: YOLOv3's the last three, YOLOv3-tiny's the last two).
TOY_IN_CHANNELS = (8, 16, 32, 64)
TOY_IN_STRIDES = (4, 8, 16, 32)
#: Anchors of the toy YOLO networks (``configs/synth_tiny.yaml``: 128 px anchors).
TOY_ANCHORS = ((3, 4), (5, 9), (10, 7), (9, 19), (19, 14), (18, 37), (36, 28), (48, 61), (115, 100))


def _name(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__name__", type(factory).__name__)


def check_factory(factory: Callable[..., Any]) -> None:
    """A factory's form: keyword-only parameters (its signature is the config schema), no
    ``**kwargs`` sink (it hides misspelt keys), and a docstring (``yoloqat list``)."""
    name = _name(factory)
    assert callable(factory), f"factory {name!r} is not callable"
    params = inspect.signature(factory).parameters.values()
    sinks = [p.name for p in params if p.kind == p.VAR_KEYWORD]
    assert not sinks, f"factory {name}: **{sinks[0]} hides misspelt config keys; name them"
    positional = [p.name for p in params if p.kind != p.KEYWORD_ONLY]
    assert not positional, (
        f"factory {name}: parameters {positional} must be keyword-only (put them after '*')"
    )
    doc = (inspect.getdoc(factory) or "").strip()
    assert doc, f"factory {name} has no docstring (its first line is what `yoloqat list` shows)"


def _build(kind: str, factory: Callable[..., Any], params: Mapping[str, Any]) -> Any:
    check_factory(factory)
    obj = factory(**params)
    check_component(kind, obj, plugin="(under test)", name=_name(factory))
    return obj


def _declared(factory: Callable[..., Any], values: Mapping[str, Any], params: Mapping) -> dict:
    """``params`` plus the pipeline-provided ``values`` the factory declares."""
    accepted = inspect.signature(factory).parameters
    return {**{k: v for k, v in values.items() if k in accepted and k not in params}, **params}


def _resolve(kind: str, component: Any) -> Callable[..., Any]:
    """A factory given as itself or as a registered name of ``kind``."""
    if isinstance(component, str):
        from yoloqat.registry import default_registry

        return default_registry().get(kind, component).factory
    return component


def check_backbone(
    factory: Callable[..., Any], /, *, input_hw: tuple[int, int] = (64, 96), **params: Any
) -> Any:
    """Build the backbone, check its contract and run it (PYNATIVE) on a ``[2, 3, H, W]``
    batch: one map per ``out_channels`` entry, map ``i`` of ``out_channels[i]`` channels at
    ``strides[i]``."""
    from mindspore import Tensor

    backbone = _build("backbone", factory, params)
    backbone.set_train(False)
    h, w = input_hw
    outs = backbone(Tensor(np.zeros((2, 3, h, w), np.float32)))
    levels = len(backbone.out_channels)
    count = len(outs) if isinstance(outs, (tuple, list)) else 1
    assert isinstance(outs, (tuple, list)) and count == levels, (
        f"backbone {_name(factory)} must return a tuple of {levels} maps (one per "
        f"out_channels entry), got {type(outs).__name__} of {count}"
    )
    for level, (out, channels, stride) in enumerate(
        zip(outs, backbone.out_channels, backbone.strides)
    ):
        want = (2, channels, h // stride, w // stride)
        assert tuple(out.shape) == want, (
            f"backbone {_name(factory)}: map {level} has shape {tuple(out.shape)}, expected "
            f"{want} (out_channels[{level}] channels at stride {stride})"
        )
    return backbone


def build_head(
    factory: Callable[..., Any] | str,
    /,
    *,
    in_channels: Sequence[int] = TOY_IN_CHANNELS,
    in_strides: Sequence[int] = TOY_IN_STRIDES,
    num_classes: int = 3,
    **params: Any,
) -> Any:
    """Build a head from its factory (or registered name) with the toy backbone's
    ``in_channels``/``in_strides`` and ``num_classes`` given when it declares them, checked
    against the head contract."""
    factory = _resolve("head", factory)
    provided = {
        "in_channels": tuple(in_channels),
        "in_strides": tuple(in_strides),
        "num_classes": num_classes,
    }
    return _build("head", factory, _declared(factory, provided, params))


def _features(head: Any, in_channels: Sequence[int], in_strides: Sequence[int], h: int, w: int):
    from mindspore import Tensor

    rng = np.random.default_rng(0)
    indices = getattr(head, "in_indices", None)
    indices = range(len(in_channels)) if indices is None else indices
    shapes = [(2, in_channels[i], h // in_strides[i], w // in_strides[i]) for i in indices]
    return [Tensor(rng.standard_normal(shape).astype(np.float32)) for shape in shapes]


def check_head(
    factory: Callable[..., Any] | str,
    /,
    *,
    in_channels: Sequence[int] = TOY_IN_CHANNELS,
    in_strides: Sequence[int] = TOY_IN_STRIDES,
    num_classes: int = 3,
    input_hw: tuple[int, int] = (64, 96),
    **params: Any,
) -> Any:
    """Build the head (:func:`build_head`), check its contract and run it on random maps of
    the toy backbone: one raw output ``[2, K_i, H / s_i, W / s_i]`` per entry of its own
    ``strides``; then its ``decode``: boxes ``[2, M, 4]`` and scores ``[2, M, C]``, finite,
    scores in [0, 1]."""

    head = build_head(
        factory, in_channels=in_channels, in_strides=in_strides, num_classes=num_classes, **params
    )
    name = _name(_resolve("head", factory))
    h, w = input_hw
    indices = getattr(head, "in_indices", None)
    indices = tuple(range(len(in_channels))) if indices is None else tuple(indices)
    assert all(0 <= i < len(in_channels) for i in indices), (
        f"head {name}: in_indices {indices} outside the toy backbone's {len(in_channels)} maps"
    )
    head.set_train(False)
    outs = head(*_features(head, in_channels, in_strides, h, w))
    strides = tuple(int(s) for s in head.strides)
    assert isinstance(outs, (tuple, list)) and len(outs) == len(strides), (
        f"head {name} must return a tuple of {len(strides)} outputs (one per stride "
        f"{strides}), got {type(outs).__name__}"
        + (f" of {len(outs)}" if isinstance(outs, (tuple, list)) else "")
    )
    for i, (out, stride) in enumerate(zip(outs, strides)):
        assert (
            out.ndim == 4
            and tuple(out.shape)[::2] == (2, h // stride)
            and (out.shape[3] == w // stride)
        ), (
            f"head {name}: output {i} (stride {stride}) has shape {tuple(out.shape)}, "
            f"expected [2, K, {h // stride}, {w // stride}]"
        )
    boxes, scores = head.decode(tuple(outs), h, w)
    boxes, scores = boxes.asnumpy(), scores.asnumpy()
    c = int(head.num_classes)
    assert boxes.ndim == 3 and boxes.shape[0] == 2 and boxes.shape[2] == 4, (
        f"head {name}: decode's boxes must be [2, M, 4], got {list(boxes.shape)}"
    )
    assert scores.shape == (2, boxes.shape[1], c), (
        f"head {name}: decode's scores must be [2, {boxes.shape[1]}, {c}], got {list(scores.shape)}"
    )
    assert np.isfinite(boxes).all() and np.isfinite(scores).all(), (
        f"head {name}: decode gave non-finite values"
    )
    assert (scores >= 0).all() and (scores <= 1).all(), (
        f"head {name}: decode's scores must be in [0, 1], got {scores.min()}..{scores.max()}"
    )
    return head


def toy_ground_truth(
    num_classes: int, input_hw: tuple[int, int] = (64, 64), max_boxes: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded ground truth of two toy images (loss contract layout): ``gt_boxes`` [2, M, 4]
    x1, y1, x2, y2 pixels, ``gt_labels`` int32 [2, M], ``gt_valid`` float32 [2, M]."""
    h, w = input_hw
    boxes = np.zeros((2, max_boxes, 4), np.float32)
    labels = np.zeros((2, max_boxes), np.int32)
    valid = np.zeros((2, max_boxes), np.float32)
    rows = [
        (0, (0.06 * w, 0.09 * h, 0.47 * w, 0.62 * h), min(1, num_classes - 1)),
        (1, (0.16 * w, 0.16 * h, 0.31 * w, 0.31 * h), 0),
        (1, (0.47 * w, 0.03 * h, 0.97 * w, 0.94 * h), num_classes - 1),
    ]
    slot = [0, 0]
    for b, box, cls in rows:
        boxes[b, slot[b]] = box
        labels[b, slot[b]] = cls
        valid[b, slot[b]] = 1.0
        slot[b] += 1
    return boxes, labels, valid


def random_batch(
    loss: Any,
    num_classes: int,
    *,
    batch: int,
    size: int,
    boxes_per_image: int = 6,
    max_boxes: int = 50,
    seed: int = 0,
) -> list[np.ndarray]:
    """A train step's inputs for random images with ``boxes_per_image`` random boxes each:
    ``[image [B, 3, S, S], gt_boxes, gt_labels, gt_valid, *loss.build_targets(...)]`` (the
    builder's arrays when the loss has one), as the training loader makes them. For
    benchmarks and compile checks of any family."""
    rng = np.random.default_rng(seed)
    n = min(boxes_per_image, max_boxes)
    xy = rng.uniform(0, size * 0.7, (batch, n, 2))
    wh = rng.uniform(size * 0.05, size * 0.3, (batch, n, 2))
    gt_boxes = np.zeros((batch, max_boxes, 4), np.float32)
    gt_boxes[:, :n] = np.concatenate([xy, np.minimum(xy + wh, size)], axis=-1)
    gt_labels = np.zeros((batch, max_boxes), np.int32)
    gt_labels[:, :n] = rng.integers(0, num_classes, (batch, n))
    gt_valid = np.zeros((batch, max_boxes), np.float32)
    gt_valid[:, :n] = 1.0
    extras: tuple = ()
    if callable(getattr(loss, "build_targets", None)):
        extras = tuple(loss.build_targets(gt_boxes, gt_labels, gt_valid, (size, size)))
    image = rng.random((batch, 3, size, size), dtype=np.float32)
    return [image, gt_boxes, gt_labels, gt_valid, *extras]


def check_loss(
    factory: Callable[..., Any] | str,
    /,
    *,
    head: Callable[..., Any] | str | Any = "yolov3_head",
    head_params: Mapping[str, Any] | None = None,
    in_channels: Sequence[int] = TOY_IN_CHANNELS,
    in_strides: Sequence[int] = TOY_IN_STRIDES,
    num_classes: int = 3,
    input_hw: tuple[int, int] = (64, 64),
    **params: Any,
) -> Any:
    """Build the loss for a head (a head factory, a registered name or a built head; by
    default the bundled ``yolov3_head``; built on maps of ``in_channels`` at ``in_strides``,
    the values a built head was made for) with the head's own values (its ``num_classes``,
    ``strides`` and ``loss_params``), check its contract and that it accepts the head's
    ``output_format``, run its ``build_targets`` (if any) on two toy images' padded ground
    truth, call it on the head's raw outputs: a finite scalar, whose gradient reaches the
    head's weights (finite, not all zero)."""
    import mindspore as ms
    from mindspore import Tensor

    net: Any = head  # a built head (an nn.Cell) from here on
    if isinstance(head, (str,)) or not hasattr(head, "decode"):
        net = build_head(
            head,
            in_channels=in_channels,
            in_strides=in_strides,
            num_classes=num_classes,
            **dict(head_params or {}),
        )
    factory = _resolve("loss", factory)
    values = {
        "num_classes": int(net.num_classes),
        "strides": [int(s) for s in net.strides],
        **dict(getattr(net, "loss_params", None) or {}),
    }
    loss = _build("loss", factory, _declared(factory, values, params))
    name = _name(factory)
    fmt = net.output_format
    assert fmt in tuple(loss.accepts), (
        f"loss {name} does not accept the head's output format {fmt!r} (accepts "
        f"{tuple(loss.accepts)})"
    )
    gt = toy_ground_truth(int(net.num_classes), input_hw)
    extras: tuple = ()
    if callable(getattr(loss, "build_targets", None)):
        extras = tuple(loss.build_targets(*gt, tuple(input_hw)))
        assert all(isinstance(e, np.ndarray) for e in extras), (
            f"loss {name}: build_targets must return a tuple of NumPy arrays"
        )
    features = _features(net, in_channels, in_strides, *input_hw)
    net.set_train(True)
    gt_tensors = [Tensor(a) for a in (*gt, *extras)]

    def forward(*feats: Any) -> Any:
        return loss(tuple(net(*feats)), *gt_tensors)

    weights = net.trainable_params()
    value, grads = ms.value_and_grad(forward, None, weights)(*features)
    arr = np.asarray(value.asnumpy())
    assert arr.size == 1 and np.isfinite(arr).all(), (
        f"loss {name} must return a finite scalar, got {arr!r}"
    )
    g = [x.asnumpy() for x in grads]
    assert all(np.isfinite(x).all() for x in g), f"loss {name}: non-finite gradients"
    assert any(np.abs(x).max() > 0 for x in g), (
        f"loss {name}: the gradient of the loss is zero for every head weight"
    )
    return loss


def check_scheduler(factory: Callable[..., Any], /, **params: Any) -> Any:
    """Build the scheduler, check its contract and ask it for 5 steps x 3 epochs: a float32
    array of 15 finite learning rates >= 0."""
    scheduler = _build("scheduler", factory, params)
    lr = scheduler.per_step(5, 3)
    assert isinstance(lr, np.ndarray) and lr.dtype == np.float32 and lr.shape == (15,), (
        f"scheduler {_name(factory)}: per_step(5, 3) must be float32 [15], got "
        f"{getattr(lr, 'dtype', type(lr).__name__)} {getattr(lr, 'shape', '')}"
    )
    assert np.isfinite(lr).all() and (lr >= 0).all(), (
        f"scheduler {_name(factory)}: learning rates must be finite and >= 0, got {lr}"
    )
    return scheduler


def check_data_source(
    source: Any,
    /,
    *,
    num_classes: int,
    max_samples: int = 3,
    name: str = "source",
    dataset: str = "(under test)",
) -> Any:
    """Check one :class:`~yoloqat.core.contracts.dataset.DataSource` as the pipeline does
    when it opens a source (its members, then :func:`yoloqat.core.integrity.
    check_source_records`: unique integer image ids and file names, numeric sizes and
    boxes, class indices in range, at least one image and one box; a DataError naming the
    image and the field), then load its first ``max_samples`` images and build its
    pycocotools ground truth. Returns the source's
    :class:`~yoloqat.core.integrity.SourceSummary`."""
    from yoloqat.core.contracts import Sample
    from yoloqat.core.contracts.dataset import check_source
    from yoloqat.core.ground_truth import coco_ground_truth
    from yoloqat.core.integrity import check_source_records, describe

    check_source(source, plugin="(under test)", name=dataset, split=name)
    anns = list(source.annotations())
    summary = check_source_records(
        source, num_classes=num_classes, where=describe(source, name, dataset), records=anns
    )
    image_ids = [a.image_id for a in anns]
    for i in range(min(max_samples, len(source))):
        sample = source.load(i)
        assert isinstance(sample, Sample), f"{name} load({i}) is not a Sample"
        img, boxes = sample.image, sample.boxes
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, (
            f"{name} load({i}): image must be uint8 [H, W, 3], got {img.dtype} {img.shape}"
        )
        h, w = img.shape[:2]
        assert tuple(sample.orig_size) == (w, h), f"{name} load({i}): orig_size != (W, H)"
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
        ok = (boxes[:, 0] >= 0) & (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 2] <= w)
        ok &= (boxes[:, 1] >= 0) & (boxes[:, 1] < boxes[:, 3]) & (boxes[:, 3] <= h)
        assert ok.all(), f"{name} load({i}): boxes outside the image or empty"
        assert ((sample.classes >= 0) & (sample.classes < num_classes)).all(), (
            f"{name} load({i}): class index outside 0..{num_classes - 1}"
        )
        assert sample.image_id == image_ids[i], f"{name} load({i}): image_id mismatch"
    coco_ground_truth(anns, tuple(range(num_classes)))
    return summary


def check_dataset(factory: Callable[..., Any], /, *, max_samples: int = 3, **params: Any) -> Any:
    """Build the dataset, check its contract and each split it has with
    :func:`check_data_source` (the integrity checks the pipeline runs when it opens a
    source: a malformed source fails with the DataError a user would see)."""
    from yoloqat.core.errors import DataError

    dataset = CheckedDataset(
        _build("dataset", factory, params), plugin="(under test)", name=_name(factory)
    )
    n, names, ids = dataset.num_classes, dataset.class_names, dataset.category_ids
    splits = 0
    for split in ("train", "val"):
        try:
            source = getattr(dataset.wrapped, f"{split}_source")()
        except DataError:
            continue  # a dataset may have one split only
        splits += 1
        check_data_source(
            source, num_classes=n, max_samples=max_samples, name=split, dataset=_name(factory)
        )
    assert splits, "the dataset has neither a train nor a val source"
    assert len(names) == n and len(ids) == n
    return dataset


def check_runtime(
    factory: Callable[..., Any], /, *, path: Any, threads: int | None = 1, **params: Any
) -> Any:
    """Open the model ``path`` with the runtime factory, check the contract and run it on a
    zero batch (2 images, or its fixed batch): float32 ``[boxes [B, M, 4], scores [B, M,
    C]]`` with one ``M``, or ``[detections [B, K, 6]]`` for a model whose metadata says
    ``nms: "true"`` (exported with ``--nms``)."""
    model = _build("runtime", factory, {"path": str(path), "threads": threads, **params})
    s, b = model.input_size, model.batch or 2
    outs = model(np.zeros((b, 3, s, s), np.float32))
    name = _name(factory)
    nms = model.metadata.get("nms") == "true"
    expected = "[detections]" if nms else "[boxes, scores]"
    assert isinstance(outs, list) and len(outs) == (1 if nms else 2), (
        f"runtime {name}: must return a list {expected}, got {type(outs).__name__}"
        + (f" of {len(outs)}" if isinstance(outs, list) else "")
    )
    for out in outs:
        assert isinstance(out, np.ndarray) and out.dtype == np.float32, (
            f"runtime {name}: outputs must be float32 NumPy arrays, got "
            f"{getattr(out, 'dtype', type(out).__name__)}"
        )
    if nms:
        (detections,) = outs
        assert detections.ndim == 3 and detections.shape[0] == b and detections.shape[2] == 6, (
            f"runtime {name}: detections must be [{b}, K, 6], got {list(detections.shape)}"
        )
        return model
    boxes, scores = outs
    assert boxes.ndim == 3 and boxes.shape[0] == b and boxes.shape[2] == 4, (
        f"runtime {name}: boxes must be [{b}, M, 4], got {list(boxes.shape)}"
    )
    assert scores.ndim == 3 and scores.shape[:2] == boxes.shape[:2], (
        f"runtime {name}: scores must be [{b}, {boxes.shape[1]}, C], got {list(scores.shape)}"
    )
    return model


def check_callback(
    factory: Callable[..., Any], /, *, run_dir: Any = None, rank: int = 0, **params: Any
) -> Any:
    """Build the callback, check its contract and send it one short run's events (2 steps,
    an epoch end, a checkpoint, a validation, the end) as rank ``rank`` in ``run_dir`` (a
    new temporary folder by default); an exception names the event method that raised."""
    import tempfile
    from pathlib import Path

    from yoloqat.core.contracts import callback as cb
    from yoloqat.core.scoring import STAT_NAMES

    callback = _build("callback", factory, params)
    folder = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="yq_cb_"))
    stats = {name: 0.5 for name in STAT_NAMES}
    sequence = [
        ("on_run_start", cb.RunInfo(folder, rank, 1, {}, 1, 2, 1, 0, 2)),
        ("on_step", cb.StepInfo(1, 0, 1, 10.0, 0.01, 4, 0.5, 64, (1, 2, 3, 4))),
        ("on_step", cb.StepInfo(1, 1, 2, 9.0, 0.01, 4, 0.5, 64, (5, 6, 7, 8))),
        ("on_checkpoint", cb.CheckpointInfo(folder / "ckpt_0" / "0-1_2.ckpt", 1, 2, 2)),
        ("on_epoch_end", cb.EpochInfo(1, 2, 9.5, folder / "ckpt_0" / "0-1_2.ckpt")),
        ("on_validation", cb.ValidationInfo(1, 2, stats, "AP50", 0.5, True, 0.5, 8)),
        ("on_run_end", cb.RunEndInfo(folder, 1, 2, "finished")),
    ]
    for method, info in sequence:
        func = getattr(callback, method, None)
        if func is None:
            continue
        try:
            func(info)
        except Exception as exc:
            raise AssertionError(
                f"callback {_name(factory)}: {method} raised {type(exc).__name__}: {exc}"
            ) from exc
    return callback
