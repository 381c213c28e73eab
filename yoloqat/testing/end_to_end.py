"""A plugin end to end at toy size: build, forward, QAT, int8 ONNX, ONNX Runtime, eval."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.testing.components import TOY_ANCHORS, TOY_MASKS, check_backbone

#: Toy sizes: 64 px images, 3 classes, the bundled head at 1/16 width.
INPUT_SIZE = 64
NUM_CLASSES = 3
HEAD_WIDTH = 0.0625
#: The toy DarkNet-53 a quantizer is checked on: 1/16 width, one residual block per stage
#: (every kind of layer the full network has: stem, stride-2 convs, residual adds, three
#: route outputs, at a third of its convs).
TOY_DARKNET = {"width": 0.0625, "blocks": (1, 1, 1, 1, 1)}
#: Outputs of ONNX Runtime and the fake-quant network this close count as equal.
MATCH_ATOL = 1e-5


@dataclass
class EndToEndReport:
    """What :func:`check_plugin_end_to_end` measured.

    ``convs``: Conv nodes of the int8 ONNX graph; ``int8_convs``: those whose weight is a
    DequantizeLinear of an INT8 initializer; ``quantized_convs``/``float_convs``: the
    quantizer's own count and the convs it left float (paths); ``max_abs_diff``: max
    ``|ONNX Runtime (ORT_DISABLE_ALL) - MindSpore fake-quant|`` over the three outputs and
    ``match_fraction`` the share of output values within ``MATCH_ATOL`` of each other;
    ``stats``: pycocotools' numbers of the int8 ONNX model on the toy val split.
    """

    convs: int
    int8_convs: int
    quantized_convs: int
    float_convs: list[str]
    max_abs_diff: float
    match_fraction: float
    onnx_path: Path
    stats: dict[str, float] = field(default_factory=dict)


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


def onnx_differences(network: Any, onnx_path: str | Path, images: np.ndarray) -> list:
    """``|ONNX Runtime - network|`` of each of the three outputs on ``images``: ONNX Runtime
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


def check_plugin_end_to_end(
    backbone: Callable[..., Any] | str = "darknet53",
    backbone_params: Mapping[str, Any] | None = None,
    *,
    quantizer: Any = "int8_qat",
    quantizer_params: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
    min_match: float = 0.9,
    bound: float = 0.15,
    seed: int = 0,
) -> EndToEndReport:
    """Build a detector on ``backbone`` (a factory, or a registered name) with the bundled
    ``yolov3_head``, run it, quantize it (a quantizer object, or a registered name built
    with ``quantizer_params``), set its ranges on synthetic images (its ``calibrate(network,
    images)`` when it has one, e.g. ``int8_ptq``, else training-mode forwards), export int8
    ONNX, and check:

    - every conv is quantized (the quantizer's summary names none left float) and every
      Conv node of the ONNX graph has int8 weights;
    - ONNX Runtime and the fake-quant network agree on the toy images: at least
      ``min_match`` of the output values within ``MATCH_ATOL`` (1e-5), and all within
      ``bound``. The QDQ graph is the fake-quant arithmetic, but MindSpore's and ONNX
      Runtime's float convs differ by ~1e-7, so an activation on a rounding boundary can
      land one int8 code apart and shift the outputs downstream of it (at 64 px one such
      value in the stride-32 path moves ~5% of the output values by up to ~1e-2); an
      export error (a float weight, a missing or wrong scale) moves nearly all of them.
      The report gives the exact figures;
    - the int8 ONNX model evaluates (pycocotools) on the toy val split.

    Everything runs on CPU at 64 px; ``workdir`` keeps the files (default: a temporary
    folder, removed on return: ``onnx_path`` is then gone); ``seed`` seeds MindSpore's and
    NumPy's global generators (the weights) for reproducible figures. Failures are
    AssertionErrors naming what failed.
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
        from yoloqat.core.runtime import cpu_launch_blocking

        cpu_launch_blocking()  # ~10x faster PYNATIVE QAT forwards on CPU
    ms.set_seed(seed)
    np.random.seed(seed)
    with tempfile.TemporaryDirectory(prefix="yoloqat-e2e-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        params = dict(backbone_params or {})
        if isinstance(backbone, str):
            from yoloqat.registry import default_registry

            factory = default_registry().get("backbone", backbone).factory
        else:
            factory = backbone
        net_backbone = check_backbone(factory, **params)
        head = yoloqat.create(
            "head",
            "yolov3_head",
            in_channels=tuple(net_backbone.out_channels),
            num_classes=NUM_CLASSES,
            anchors=TOY_ANCHORS,
            anchor_masks=TOY_MASKS,
            width=HEAD_WIDTH,
        )
        network = Detector(net_backbone, head)
        data = _toy_data(root / "data")
        images = _images(data.val_source())
        network.set_train(False)
        float_out = [o.asnumpy() for o in network(ms.Tensor(images))]
        assert all(np.isfinite(o).all() for o in float_out), "float forward is not finite"

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
            network, root / "model_int8.onnx", input_size=INPUT_SIZE, int8=True, batch=None
        )
        int8_convs, convs = count_int8_convs(path)
        assert int8_convs == convs - len(summary.skipped), (
            f"only {int8_convs} of {convs} ONNX convs have int8 weights"
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
            stats=dict(result.stats),
        )
