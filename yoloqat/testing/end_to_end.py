"""A plugin end to end at toy size: build, forward, QAT, int8 ONNX, ONNX Runtime, eval."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.testing.components import (
    TOY_ANCHORS,
    _build,
    _declared,
    _resolve,
    check_backbone,
)

#: Toy sizes: 64 px images, 3 classes, the bundled head at 1/16 width.
INPUT_SIZE = 64
NUM_CLASSES = 3
HEAD_WIDTH = 0.0625
#: The bundled head's toy settings (used when ``head`` is left at ``yolov3_head``).
TOY_YOLO_HEAD = {"width": HEAD_WIDTH, "anchors": TOY_ANCHORS}
#: The toy DarkNet-53 a quantizer is checked on: 1/16 width, one residual block per stage
#: (every kind of layer the full network has: stem, stride-2 convs, residual adds, three
#: route outputs, at a third of its convs).
TOY_DARKNET = {"width": 0.0625, "blocks": (1, 1, 1, 1, 1)}
#: Outputs of ONNX Runtime and the fake-quant network this close count as equal.
MATCH_ATOL = 1e-5


@dataclass
class EndToEndReport:
    """What :func:`check_plugin_end_to_end` measured.

    ``convs``: Conv nodes of the int8 ONNX graph (exported without splitting convs over
    concatenations; a conv shared by several levels is one node per call, and the check
    compares the distinct weights with the network's convs); ``int8_convs``: those whose
    weight is a DequantizeLinear of an INT8 initializer; ``quantized_convs``/``float_convs``: the
    quantizer's own count and the convs it left float (paths); ``max_abs_diff``: max
    ``|ONNX Runtime (ORT_DISABLE_ALL) - MindSpore fake-quant|`` over the outputs (boxes,
    scores) and ``match_fraction`` the share of output values within ``MATCH_ATOL`` of each
    other; ``losses``: the float network's loss before and after one SGD step on the toy
    images; ``stats``: pycocotools' numbers of the int8 ONNX model on the toy val split.
    """

    convs: int
    int8_convs: int
    quantized_convs: int
    float_convs: list[str]
    max_abs_diff: float
    match_fraction: float
    onnx_path: Path
    losses: tuple[float, float] = (0.0, 0.0)
    stats: dict[str, float] = field(default_factory=dict)
    #: The quantized network the ONNX file was exported from (eval mode), for more checks.
    network: Any = None


def count_int8_convs(model: Any) -> tuple[int, int]:
    """``(int8 convs, all convs)`` of an ONNX model (a path or a ``ModelProto``): a conv is
    int8 when its weight input comes from a DequantizeLinear of an INT8 initializer."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    int8_weights = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in int8
    }
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    return sum(1 for c in convs if len(c.input) > 1 and c.input[1] in int8_weights), len(convs)


def count_int8_conv_weights(model: Any) -> tuple[int, int]:
    """``(int8 weights, all weights)`` of the Conv nodes of an ONNX model, counting each
    distinct weight once (a conv shared by several levels, e.g. one tower for all of them,
    is one network conv but one Conv node per call)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    source = {
        n.output[0]: n.input[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in int8
    }
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    distinct = {source.get(w, w) for w in weights}
    return len({w for w in distinct if w in int8}), len(distinct)


def onnx_differences(network: Any, onnx_path: str | Path, images: np.ndarray) -> list:
    """``|ONNX Runtime - network|`` of each output (boxes, scores) on ``images``: ONNX Runtime
    with graph optimizations off (``ORT_DISABLE_ALL``: the QDQ graph computed as written),
    the MindSpore network in eval mode (fake quant on)."""
    import onnxruntime as ort
    from mindspore import Tensor

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})
    network.set_train(False)
    want = [o.asnumpy() for o in network(Tensor(images.astype(np.float32)))]
    return [np.abs(g - w) for g, w in zip(got, want)]


def max_onnx_difference(network: Any, onnx_path: str | Path, images: np.ndarray) -> float:
    """Max ``|ONNX Runtime - network|`` over the outputs (see :func:`onnx_differences`)."""
    return max(float(d.max()) for d in onnx_differences(network, onnx_path, images))


def _toy_data(root: Path) -> Any:
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.pipeline import build_dataset

    make_synthetic_coco(root, train=4, val=3, size=INPUT_SIZE, seed=5, num_classes=NUM_CLASSES)
    return build_dataset({"dataset": {"name": "coco", "data_dir": str(root)}})


def _images(source: Any) -> np.ndarray:
    from yoloqat.engine.evaluate import load_batches

    batches = load_batches(source, testing_shape=INPUT_SIZE, batch_size=len(source))
    return np.concatenate([b["image"] for b in batches], axis=0).astype(np.float32)


def _train_step(network: Any, loss: Any, data: Any) -> tuple[float, float]:
    """One PYNATIVE SGD step of the float network on the toy training images: the loss
    before and after it (the step must give finite numbers and change the weights)."""
    import mindspore as ms
    from mindspore import Tensor

    from yoloqat.data.loader import TrainLoader

    loader = TrainLoader(
        data.train_source(),
        batch_size=2,
        target_builder=getattr(loss, "build_targets", None),
        max_boxes=8,
        training_shape=INPUT_SIZE,
        augment={"jitter": 0.0, "scale": (1.0, 1.0), "flip": 0.0, "hue": 0.0},
    )
    batch = next(iter(loader.epoch(0)))
    inputs = [Tensor(a) for a in batch["inputs"]]
    network.set_train(True)
    weights = network.trainable_params()
    optimizer = ms.nn.SGD(weights, learning_rate=1e-3)

    def forward(*args: Any) -> Any:
        return loss(network(args[0]), *args[1:])

    grad_fn = ms.value_and_grad(forward, None, weights)
    before, grads = grad_fn(*inputs)
    optimizer(grads)
    after, _ = grad_fn(*inputs)
    values = float(before.asnumpy()), float(after.asnumpy())
    assert all(np.isfinite(values)), f"the loss is not finite: {values}"
    assert values[0] != values[1], "one SGD step did not change the loss"
    return values


def check_plugin_end_to_end(
    backbone: Callable[..., Any] | str = "darknet53",
    backbone_params: Mapping[str, Any] | None = None,
    *,
    head: Callable[..., Any] | str = "yolov3_head",
    head_params: Mapping[str, Any] | None = None,
    loss: Callable[..., Any] | str | None = None,
    loss_params: Mapping[str, Any] | None = None,
    quantizer: Any = "int8_qat",
    quantizer_params: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
    min_match: float = 0.5,
    bound: float = 0.15,
    seed: int = 0,
) -> EndToEndReport:
    """A detector of ``backbone``, ``head`` and ``loss`` (factories, or registered names;
    by default the bundled ``yolov3_head`` at toy size and, for a head of the "yolo" output
    format, ``yolov3_loss``) end to end: build it (each part checked against its contract,
    the pair against each other), run it, train one step, quantize it (a quantizer object,
    or a registered name built with ``quantizer_params``), set its ranges on synthetic
    images (its ``calibrate(network, images)`` when it has one, e.g. ``int8_ptq``, else
    training-mode forwards), export int8 ONNX, and check:

    - every conv is quantized (the quantizer's summary names none left float), the ONNX
      graph has one Conv node per network conv and every one has int8 weights;
    - ONNX Runtime and the fake-quant network agree on the toy images: at least
      ``min_match`` of the output values within ``MATCH_ATOL`` (1e-5), and all within
      ``bound``. The QDQ graph is the fake-quant arithmetic, but MindSpore's and ONNX
      Runtime's float convs differ by ~1e-7, so an activation on a rounding boundary can
      land one int8 code apart and shift the outputs downstream of it: at 64 px one such
      value in the stride-32 path moves ~5% of a DarkNet-53's output values and up to ~36%
      of a YOLOv3-tiny's (its 2x2 and 4x4 grids spread it; measured over seeds 0-3: 64%,
      86%, 100%, 100% within 1e-5, max 1.1e-2), while an export error (a float weight, a
      missing or wrong scale) moves nearly all of them. The report gives the exact figures;
    - the int8 ONNX model evaluates (pycocotools) on the toy val split.

    Everything runs on CPU at 64 px; ``workdir`` keeps the files (default: a temporary
    folder, removed on return: ``onnx_path`` is then gone); ``seed`` seeds MindSpore's and
    NumPy's global generators (the weights) for reproducible figures. Failures are
    AssertionErrors naming what failed (or the contract's PluginError).
    """
    import mindspore as ms

    import yoloqat
    from yoloqat.core.detector import Detector
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine.evaluate import evaluate_source
    from yoloqat.engine.pipeline import quantize
    from yoloqat.engine.runtimes import open_model

    ms.set_context(mode=ms.PYNATIVE_MODE)
    if ms.get_context("device_target") == "CPU":
        from yoloqat.core.device import cpu_launch_blocking

        cpu_launch_blocking()  # ~10x faster PYNATIVE QAT forwards on CPU
    ms.set_seed(seed)
    np.random.seed(seed)
    with tempfile.TemporaryDirectory(prefix="yoloqat-e2e-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        net_backbone = check_backbone(_resolve("backbone", backbone), **dict(backbone_params or {}))
        hparams = dict(head_params or {})
        if head == "yolov3_head" and head_params is None:
            hparams = dict(TOY_YOLO_HEAD)
        head_factory = _resolve("head", head)
        provided = {
            "in_channels": tuple(net_backbone.out_channels),
            "in_strides": tuple(net_backbone.strides),
            "num_classes": NUM_CLASSES,
        }
        net_head = _build("head", head_factory, _declared(head_factory, provided, hparams))
        network = Detector(net_backbone, net_head)
        if loss is None:
            assert net_head.output_format == "yolo", (
                f"give the loss of the head's family: check_plugin_end_to_end(..., loss=...) "
                f"(the head's outputs are {net_head.output_format!r})"
            )
            loss = "yolov3_loss"
        loss_factory = _resolve("loss", loss)
        values = {
            "num_classes": network.num_classes,
            "strides": list(network.strides),
            **dict(getattr(net_head, "loss_params", None) or {}),
        }
        loss_cell = _build(
            "loss", loss_factory, _declared(loss_factory, values, dict(loss_params or {}))
        )
        assert network.output_format in tuple(loss_cell.accepts), (
            f"the loss does not accept the head's output format {network.output_format!r}"
        )
        data = _toy_data(root / "data")
        images = _images(data.val_source())
        network.set_train(False)
        float_out = [o.asnumpy() for o in network(ms.Tensor(images))]
        assert all(np.isfinite(o).all() for o in float_out), "float forward is not finite"
        losses = _train_step(network, loss_cell, data)

        if isinstance(quantizer, str):
            qparams = {"ema_init": "first_batch"} if quantizer == "int8_qat" else {}
            quantizer = yoloqat.create(
                "quantizer", quantizer, **{**qparams, **(quantizer_params or {})}
            )
        network = quantize(network, quantizer)
        summary = quantizer.summary(network)
        left = [*summary.unsupported, *summary.skipped]
        assert summary.quantized_convs > 0, "the quantizer quantized no conv"
        assert not summary.unsupported, (
            f"{len(summary.unsupported)} of {summary.total_convs} convs stayed float: "
            f"{', '.join(summary.unsupported[:8])}"
        )
        train_images = _images(data.train_source())
        if callable(getattr(quantizer, "calibrate", None)):  # a PTQ: ranges by calibration
            quantizer.calibrate(network, [train_images])
        else:  # QAT: observers (activation ranges) from training-mode forwards
            network.set_train(True)
            for _ in range(2):
                network(ms.Tensor(train_images))
        network.set_train(False)
        assert quantizer.set_fake_quant(network, False) > 0, "set_fake_quant switched nothing"
        assert quantizer.set_fake_quant(network, True) > 0
        with quantizer.eval_gates(network) as (_net, gates):
            assert gates, "eval_gates yielded no per-layer gates"

        path = export_onnx(
            network,
            root / "model_int8.onnx",
            input_size=INPUT_SIZE,
            int8=True,
            batch=None,
            split_concat=False,  # one Conv node per network conv, to count them
        )
        int8_convs, convs = count_int8_convs(path)
        assert int8_convs == convs - len(summary.skipped), (
            f"only {int8_convs} of {convs} ONNX convs have int8 weights"
        )
        int8_weights, weights = count_int8_conv_weights(path)
        assert weights == summary.total_convs, (
            f"the ONNX graph's convs have {weights} distinct weights, the network has "
            f"{summary.total_convs} convs"
        )
        assert int8_weights == summary.quantized_convs, (
            f"{int8_weights} of {weights} ONNX conv weights are int8; the quantizer quantized "
            f"{summary.quantized_convs} (skipped: {len(summary.skipped)})"
        )
        diffs = onnx_differences(network, path, images)
        diff = max(float(d.max()) for d in diffs)
        match = float(np.mean(np.concatenate([(d <= MATCH_ATOL).ravel() for d in diffs])))
        assert match >= min_match and diff <= bound, (
            f"ONNX Runtime and the fake-quant network differ: {match:.2%} of the outputs "
            f"within {MATCH_ATOL:g} (need {min_match:.0%}), max {diff:.3g} (bound {bound:g})"
        )
        result = evaluate_source(
            open_model(path, threads=1),
            data.val_source(),
            data.category_ids,
            testing_shape=INPUT_SIZE,
            batch_size=len(images),
        )
        assert np.isfinite(list(result.stats.values())).all(), "evaluation gave no numbers"
        return EndToEndReport(
            convs=convs,
            int8_convs=int8_convs,
            quantized_convs=summary.quantized_convs,
            float_convs=left,
            max_abs_diff=diff,
            match_fraction=match,
            onnx_path=Path(path),
            losses=losses,
            stats=dict(result.stats),
            network=network,
        )


def check_quantizer(factory: Callable[..., Any], /, *, workdir: Any = None, **params: Any) -> Any:
    """Build the quantizer, check its contract, and run it end to end on the bundled toy
    DarkNet-53 (:data:`TOY_DARKNET`: 1/16 width, one residual block per stage;
    :func:`~yoloqat.testing.check_plugin_end_to_end`): quantize, switch fake quantization,
    gates, int8 export, ONNX Runtime vs fake quant."""
    quantizer = _build("quantizer", factory, params)
    check_plugin_end_to_end("darknet53", TOY_DARKNET, quantizer=quantizer, workdir=workdir)
    return quantizer
