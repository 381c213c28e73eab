"""Per-kind conformance checks: build from the factory, check the contract, exercise it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from yoloqat.core.contracts import CheckedDataset, check_component

#: Anchors and masks of the toy networks (``configs/synth_tiny.yaml``: 128 px anchors).
TOY_ANCHORS = ((3, 4), (5, 9), (10, 7), (9, 19), (19, 14), (18, 37), (36, 28), (48, 61), (115, 100))
TOY_MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))


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


def check_backbone(
    factory: Callable[..., Any], /, *, input_hw: tuple[int, int] = (64, 96), **params: Any
) -> Any:
    """Build the backbone, check its contract and run it (PYNATIVE) on a ``[2, 3, H, W]``
    batch: three maps of ``out_channels`` channels at strides 8, 16, 32."""
    from mindspore import Tensor

    backbone = _build("backbone", factory, params)
    backbone.set_train(False)
    h, w = input_hw
    outs = backbone(Tensor(np.zeros((2, 3, h, w), np.float32)))
    assert isinstance(outs, (tuple, list)) and len(outs) == 3, (
        f"backbone {_name(factory)} must return (C3, C4, C5), got {type(outs).__name__}"
    )
    for level, (out, channels, stride) in enumerate(zip(outs, backbone.out_channels, (8, 16, 32))):
        want = (2, channels, h // stride, w // stride)
        assert tuple(out.shape) == want, (
            f"backbone {_name(factory)}: C{level + 3} has shape {tuple(out.shape)}, expected "
            f"{want} (out_channels[{level}] channels at stride {stride})"
        )
    return backbone


def check_head(
    factory: Callable[..., Any],
    /,
    *,
    in_channels: tuple[int, int, int] = (16, 32, 64),
    num_classes: int = 3,
    input_hw: tuple[int, int] = (64, 96),
    **params: Any,
) -> Any:
    """Build the head (``in_channels``/``num_classes`` given when declared), check its
    contract and run it on random C3, C4, C5: raw maps ``[2, A * (5 + C), H/s, W/s]`` for
    s = 32, 16, 8."""
    from mindspore import Tensor

    provided = {"in_channels": in_channels, "num_classes": num_classes}
    head = _build("head", factory, _declared(factory, provided, params))
    head.set_train(False)
    h, w = input_hw
    rng = np.random.default_rng(0)
    feats = [
        Tensor(rng.standard_normal((2, c, h // s, w // s)).astype(np.float32))
        for c, s in zip(in_channels, (8, 16, 32))
    ]
    outs = head(*feats)
    assert len(outs) == 3, f"head {_name(factory)} must return 3 maps, got {len(outs)}"
    for out, mask, stride in zip(outs, head.anchor_masks, (32, 16, 8)):
        want = (2, len(mask) * (5 + int(head.num_classes)), h // stride, w // stride)
        assert tuple(out.shape) == want, (
            f"head {_name(factory)}: the stride-{stride} map has shape {tuple(out.shape)}, "
            f"expected {want}"
        )
    return head


def check_loss(factory: Callable[..., Any], /, *, num_classes: int = 3, **params: Any) -> Any:
    """Build the loss (model values given when declared), check its contract and call it
    on random raw outputs with targets from :func:`yoloqat.data.targets.build_targets_batch`
    for two 64x64 images: a finite scalar."""
    from mindspore import Tensor

    from yoloqat.data.targets import build_targets_batch

    provided = {"num_classes": num_classes, "anchors": TOY_ANCHORS, "anchor_masks": TOY_MASKS}
    loss = _build("loss", factory, _declared(factory, provided, params))
    boxes = np.zeros((2, 4, 5), np.float32)
    boxes[0, 0] = (4, 6, 30, 40, 1)
    boxes[1, :2] = ((10, 10, 20, 20, 0), (30, 2, 62, 60, num_classes - 1))
    targets = build_targets_batch(boxes, (64, 64), TOY_ANCHORS, TOY_MASKS, num_classes, 8)
    rng = np.random.default_rng(0)
    outs = [
        rng.standard_normal((2, 64 // s, 64 // s, 3, 5 + num_classes)).astype(np.float32)
        for s in (32, 16, 8)
    ]
    value = loss(*[Tensor(a) for a in (*outs, *targets)])
    arr = np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value)
    assert arr.size == 1 and np.isfinite(arr).all(), (
        f"loss {_name(factory)} must return a finite scalar, got {arr!r}"
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


def check_quantizer(factory: Callable[..., Any], /, *, workdir: Any = None, **params: Any) -> Any:
    """Build the quantizer, check its contract, and run it end to end on the bundled toy
    DarkNet-53 (``end_to_end.TOY_DARKNET``: 1/16 width, one residual block per stage;
    :func:`~yoloqat.testing.check_plugin_end_to_end`): quantize, switch fake quantization,
    gates, int8 export, ONNX Runtime vs fake quant."""
    from yoloqat.testing.end_to_end import TOY_DARKNET, check_plugin_end_to_end

    quantizer = _build("quantizer", factory, params)
    check_plugin_end_to_end("darknet53", TOY_DARKNET, quantizer=quantizer, workdir=workdir)
    return quantizer


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
    zero batch (2 images, or its fixed batch): 3 float32 outputs ``[B, H, W, A, 5 + C]`` at
    strides 32, 16, 8 with one ``A`` and one ``5 + C``."""
    model = _build("runtime", factory, {"path": str(path), "threads": threads, **params})
    s, b = model.input_size, model.batch or 2
    outs = model(np.zeros((b, 3, s, s), np.float32))
    name = _name(factory)
    assert isinstance(outs, list) and len(outs) == 3, (
        f"runtime {name}: must return a list of 3 arrays, got {type(outs).__name__}"
    )
    tails = set()
    for out, stride in zip(outs, (32, 16, 8)):
        want = (b, s // stride, s // stride)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32, (
            f"runtime {name}: outputs must be float32 NumPy arrays, got "
            f"{getattr(out, 'dtype', type(out).__name__)}"
        )
        assert out.ndim == 5 and out.shape[:3] == want and out.shape[4] >= 6, (
            f"runtime {name}: output at stride {stride} must be [{b}, {want[1]}, {want[2]}, "
            f"A, 5 + C], got {list(out.shape)}"
        )
        tails.add(out.shape[3:])
    assert len(tails) == 1, f"runtime {name}: outputs disagree on A and 5 + C: {tails}"
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
    from yoloqat.core.evaluation import STAT_NAMES

    callback = _build("callback", factory, params)
    folder = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="yq_cb_"))
    stats = {name: 0.5 for name in STAT_NAMES}
    sequence = [
        ("on_run_start", cb.RunInfo(folder, rank, 1, {}, 1, 2, 0, 0, 2)),
        ("on_step", cb.StepInfo(0, 0, 1, 10.0, 0.01, 4, 0.5, 64, (1, 2, 3, 4))),
        ("on_step", cb.StepInfo(0, 1, 2, 9.0, 0.01, 4, 0.5, 64, (5, 6, 7, 8))),
        ("on_checkpoint", cb.CheckpointInfo(folder / "ckpt_0" / "0-1_2.ckpt", 0, 2, 2)),
        ("on_epoch_end", cb.EpochInfo(0, 2, 9.5, folder / "ckpt_0" / "0-1_2.ckpt")),
        ("on_validation", cb.ValidationInfo(0, 2, stats, "AP50", 0.5, True, 0.5, 8)),
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
