"""Float vs fake-quant vs exported int8: accuracy, model size, latency, layer sensitivity.

Used by ``yoloqat quant-report`` and ``yoloqat demo``. Every number is measured on the same
data and machine in one run.
"""

from __future__ import annotations

import statistics
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.errors import UsageError
from yoloqat.engine.evaluate import Subset, evaluate_source, load_batches

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


def latency_ms(predictor: Any, input_size: int, *, repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time (ms) of one batch-1 call at ``input_size``."""
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size)).astype(np.float32)
    for _ in range(warmup):
        predictor(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(statistics.median(times), 3)


def _row(name: str, result: Any, size: int | None, latency: float | None) -> dict[str, Any]:
    return {
        "model": name,
        "AP": round(result.stats["AP"], 4),
        "AP50": round(result.stats["AP50"], 4),
        "size_bytes": size,
        "latency_ms": latency,
    }


def compare_models(
    float_net: Any,
    qat_net: Any,
    dataset: Any,
    *,
    testing_shape: int,
    output_dir: str | Path,
    batch_size: int = 1,
    repeats: int = 10,
    float_checkpoint: str | Path | None = None,
    qat_checkpoint: str | Path | None = None,
    ptq_net: Any = None,
    ptq_checkpoint: str | Path | None = None,
    runtime: str = "onnxruntime",
    threads: int | None = None,
    registry: ComponentRegistry | None = None,
    preprocess: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate and time the float net, the fake-quant net and their ONNX exports.

    The ONNX files run with the runtime component ``runtime`` (``threads`` threads); their
    rows are named ``<runtime>_float``, ``<runtime>_int8`` (and ``<runtime>_ptq_int8``).

    With ``ptq_net`` (a post-training-quantized network, e.g. ``int8_ptq``), its fake-quant
    and int8 ONNX rows are added (``ptq.onnx``), for a float / PTQ / QAT comparison.

    Evaluation runs at ``batch_size`` 1, the batch the latencies are measured at, so each
    MindSpore network compiles one graph. Writes ``float.onnx`` and ``int8.onnx`` into
    ``output_dir``, each with ``metadata`` (class names, preprocessing, family:
    :func:`yoloqat.engine.export.model_metadata`), so they run on their own like an
    exported file. Returns a JSON-able dict
    with one row per model and the int8-vs-float differences.
    """
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine.inference import MindSporePredictor
    from yoloqat.engine.runtimes import open_model

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = dataset.val_source()

    def run(name: str, predictor: Any) -> Any:
        return evaluate_source(
            predictor,
            source,
            dataset.category_ids,
            testing_shape=testing_shape,
            batch_size=batch_size,
            description=f"eval {name}",
            **(preprocess or {}),
        )

    float_pred = MindSporePredictor(float_net)
    qat_pred = MindSporePredictor(qat_net)
    options: dict[str, Any] = {"input_size": testing_shape, "batch": None, "metadata": metadata}
    float_onnx = export_onnx(float_net, out / "float.onnx", **options)
    int8_onnx = export_onnx(qat_net, out / "int8.onnx", int8=True, **options)

    def load(path: Path) -> Any:
        return open_model(path, runtime, threads=threads, registry=registry)

    rt_float, rt_int8 = f"{runtime}_float", f"{runtime}_int8"
    models = [
        ("mindspore_float", float_pred, float_checkpoint),
        ("mindspore_fake_quant", qat_pred, qat_checkpoint),
        (rt_float, load(float_onnx), float_onnx),
        (rt_int8, load(int8_onnx), int8_onnx),
    ]
    files = {"float_onnx": str(float_onnx), "int8_onnx": str(int8_onnx)}
    if ptq_net is not None:
        ptq_onnx = export_onnx(ptq_net, out / "ptq.onnx", int8=True, **options)
        files["ptq_onnx"] = str(ptq_onnx)
        models += [
            ("mindspore_ptq", MindSporePredictor(ptq_net), ptq_checkpoint),
            (f"{runtime}_ptq_int8", load(ptq_onnx), ptq_onnx),
        ]
    rows = []
    results = {}
    for name, pred, size_path in models:
        results[name] = run(name, pred)
        size = Path(size_path).stat().st_size if size_path else None
        rows.append(
            _row(name, results[name], size, latency_ms(pred, testing_shape, repeats=repeats))
        )
        events.info(f"{name}: AP50 {rows[-1]['AP50']:.4f}, {rows[-1]['latency_ms']} ms")
    by = {r["model"]: r for r in rows}
    extra = {}
    if ptq_net is not None:
        extra = {
            "ptq_int8_vs_float_AP50": round(
                by[f"{runtime}_ptq_int8"]["AP50"] - by["mindspore_float"]["AP50"], 4
            ),
            "ptq_int8_vs_qat_int8_AP50": round(
                by[f"{runtime}_ptq_int8"]["AP50"] - by[rt_int8]["AP50"], 4
            ),
        }
    return {
        "testing_shape": testing_shape,
        "runtime": runtime,
        "images": results["mindspore_float"].num_images,
        "rows": rows,
        "int8_vs_float_AP50": round(by[rt_int8]["AP50"] - by["mindspore_float"]["AP50"], 4),
        "int8_vs_fake_quant_AP": round(by[rt_int8]["AP"] - by["mindspore_fake_quant"]["AP"], 4),
        "int8_speedup_vs_onnx_float": round(
            by[rt_float]["latency_ms"] / by[rt_int8]["latency_ms"], 3
        ),
        "int8_size_ratio": round(by[rt_int8]["size_bytes"] / by[rt_float]["size_bytes"], 3),
        **extra,
        "files": files,
    }


def layer_sensitivity(
    qat_net: Any,
    dataset: Any,
    *,
    testing_shape: int,
    top: int = 10,
    max_images: int | None = 50,
    patterns: tuple[str, ...] = ("*",),
    batch_size: int = 8,
    preprocess: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """AP change when only one layer is quantized, for each quantized layer whose path
    matches one of ``patterns`` (fnmatch; default: all).

    Returns the ``top`` layers with the largest AP drop against the float (all fake-quant
    off) network, so a user can list them in the quantizer's ``skip_layers``. One GRAPH_MODE
    graph serves every layer: the fake quants are switched by Parameters
    (the quantizer contract's ``eval_gates``), not by recompiling.
    """
    from mindspore import Tensor

    from yoloqat.core.contracts.quantizer import quantizer_of
    from yoloqat.engine.inference import MindSporePredictor

    source = Subset(dataset.val_source(), max_images)
    prep = dict(preprocess or {})
    batches = load_batches(source, testing_shape=testing_shape, batch_size=batch_size, **prep)
    quantizer = quantizer_of(qat_net)
    if quantizer is None:
        raise UsageError("layer sensitivity needs a quantized network; this one is float")
    with quantizer.eval_gates(qat_net) as (net, gates):
        layers = [path for path in gates if any(fnmatchcase(path, p) for p in patterns)]
        pred = MindSporePredictor(net)

        def ap(quantized: str | None) -> float:
            for path, params in gates.items():
                for param in params:
                    param.set_data(Tensor(np.float32(path == quantized)))
            return evaluate_source(
                pred,
                source,
                dataset.category_ids,
                testing_shape=testing_shape,
                batch_size=batch_size,
                description="sensitivity",
                batches=batches,
                letterbox=bool(prep.get("letterbox", False)),
            ).stats["AP"]

        base = ap(None)
        rows: list[dict[str, Any]] = []
        with events.task("layer sensitivity", len(layers)) as bar:
            for path in layers:
                rows.append({"layer": path, "AP_drop": round(base - ap(path), 5)})
                bar.advance(1)
    rows.sort(key=lambda r: -r["AP_drop"])
    return rows[:top]
