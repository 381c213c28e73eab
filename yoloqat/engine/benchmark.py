"""One table of every way to run a model: (format, precision, runtime) -> size, AP, latency.

Used by ``yoloqat benchmark``. Each row is a *target*: the MindSpore network itself
(``mindspore`` format, fp32, or int8 as its fake-quant simulation) or an exported ONNX file
(fp32, or int8 QDQ) run by a runtime component (``onnxruntime``, ``openvino``, or a
third-party one). The stages, each failing per row and never for the whole table:

1. **export**: each (format, precision) once; a failure marks its rows ``export failed``;
2. **open + evaluate**: each row's runtime opens the file and evaluates the val images
   (the same engine as ``yoloqat eval``); a failure marks the row ``exported but eval
   failed`` with the reason;
3. **latency**: every row that works runs the same fixed input, in alternating rounds (so
   machine load affects all rows alike); ms/img is the median call time over the batch.

Every number is measured on the same images and machine in one run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.errors import UsageError

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

FORMATS = ("mindspore", "onnx")
PRECISIONS = ("fp32", "int8")
STATUS_OK = "ok"
STATUS_EVAL_FAILED = "exported but eval failed"
STATUS_EXPORT_FAILED = "export failed"


@dataclass
class Target:
    """One row of the table: a model file (or network) and the runtime that runs it."""

    format: str
    precision: str
    runtime: str
    status: str = STATUS_OK
    error: str | None = None
    file: str | None = None
    size_bytes: int | None = None
    AP: float | None = None
    AP50: float | None = None
    latency_ms: float | None = None
    predictor: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision} ({self.runtime})"

    def fail(self, status: str, exc: BaseException) -> None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.status, self.error = status, f"{type(exc).__name__}: {first}"[:300]
        self.predictor = None
        events.warn(f"benchmark {self.label}: {self.status}: {self.error}")


def plan(
    formats: Sequence[str], precisions: Sequence[str], runtimes: Sequence[str]
) -> list[Target]:
    """The rows for these formats, precisions and (ONNX) runtimes, in table order."""
    for what, given, known in (("format", formats, FORMATS), ("precision", precisions, PRECISIONS)):
        for value in given:
            if value not in known:
                raise UsageError(
                    f"--{what}s: {value!r} is not a {what}; expected one of {', '.join(known)}"
                )
    targets = []
    for fmt in FORMATS:
        if fmt not in formats:
            continue
        for precision in PRECISIONS:
            if precision not in precisions:
                continue
            names = ["mindspore"] if fmt == "mindspore" else list(runtimes)
            targets += [Target(fmt, precision, name) for name in names]
    if not targets:
        raise UsageError("nothing to benchmark: no format, precision or runtime selected")
    return targets


def _export(
    targets: list[Target],
    networks: dict[str, Any],
    out: Path,
    *,
    input_size: int,
    metadata: dict[str, str] | None = None,
) -> None:
    """Export each (format, precision) once and record the file (or the failure) per row."""
    from yoloqat.deploy.onnx_export import export_onnx

    done: dict[tuple[str, str], Any] = {}
    for t in targets:
        key = (t.format, t.precision)
        if key not in done:
            network = networks.get(t.precision)
            try:
                if isinstance(network, BaseException):
                    raise network
                if network is None:
                    raise UsageError(f"no {t.precision} network to benchmark")
                if t.format == "mindspore":
                    done[key] = None
                else:
                    path = out / f"model_{t.precision}.onnx"
                    events.info(f"benchmark: exporting {t.precision} ONNX to {path}")
                    done[key] = export_onnx(
                        network,
                        path,
                        input_size=input_size,
                        batch=None,
                        int8=t.precision == "int8",
                        metadata=metadata,
                    )
            except Exception as exc:
                done[key] = exc
        result = done[key]
        if isinstance(result, BaseException):
            t.fail(STATUS_EXPORT_FAILED, result)
        elif result is not None:
            t.file, t.size_bytes = str(result), Path(result).stat().st_size


def _open(
    t: Target, networks: dict[str, Any], threads: int | None, registry: ComponentRegistry | None
) -> None:
    from yoloqat.engine.inference import MindSporePredictor
    from yoloqat.engine.runtimes import open_model

    try:
        if t.format == "mindspore":
            t.predictor = MindSporePredictor(networks[t.precision])
        else:
            assert t.file is not None  # an exported model's row names its file
            t.predictor = open_model(t.file, t.runtime, threads=threads, registry=registry)
    except Exception as exc:
        t.fail(STATUS_EVAL_FAILED, exc)


def _evaluate(t: Target, dataset: Any, batches: list[Any], source: Any, eval_options: dict) -> None:
    from yoloqat.engine.evaluate import evaluate_source

    try:
        result = evaluate_source(
            t.predictor,
            source,
            dataset.category_ids,
            batches=batches,
            description=f"eval {t.label}",
            **eval_options,
        )
        t.AP, t.AP50 = round(result.stats["AP"], 4), round(result.stats["AP50"], 4)
    except Exception as exc:
        t.fail(STATUS_EVAL_FAILED, exc)


def _time(targets: list[Target], x: np.ndarray, *, runs: int, warmup: int) -> None:
    """Median ms/img of each working row, rows alternated within every round."""
    live = [t for t in targets if t.predictor is not None]
    times: dict[int, list[float]] = {id(t): [] for t in live}
    with events.task("benchmark: latency", total=(warmup + runs) * len(live)) as task:
        for round_ in range(warmup + runs):
            for t in live:
                if t.predictor is None:
                    continue
                try:
                    t0 = time.perf_counter()
                    t.predictor(x)
                    elapsed = (time.perf_counter() - t0) * 1000.0
                except Exception as exc:
                    t.fail(STATUS_EVAL_FAILED, exc)
                    continue
                if round_ >= warmup:
                    times[id(t)].append(elapsed)
                task.advance()
    for t in live:
        if t.predictor is not None and times[id(t)]:
            t.latency_ms = round(statistics.median(times[id(t)]) / len(x), 3)


def _row(t: Target, reference: float | None) -> dict[str, Any]:
    speedup = None
    if reference and t.latency_ms:
        speedup = round(reference / t.latency_ms, 3)
    return {
        "format": t.format,
        "precision": t.precision,
        "runtime": t.runtime,
        "status": t.status,
        "error": t.error,
        "file": t.file,
        "size_mb": round(t.size_bytes / 1e6, 2) if t.size_bytes else None,
        "AP": t.AP,
        "AP50": t.AP50,
        "latency_ms": t.latency_ms,
        "images_per_s": round(1000.0 / t.latency_ms, 2) if t.latency_ms else None,
        "speedup_vs_mindspore_fp32": speedup,
    }


def run_benchmark(
    networks: dict[str, Any],
    targets: list[Target],
    *,
    testing_shape: int,
    output_dir: str | Path,
    dataset: Any = None,
    max_images: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    eval_options: dict[str, Any] | None = None,
    mindspore_size_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
    registry: ComponentRegistry | None = None,
) -> dict[str, Any]:
    """Export, evaluate and time every target; return the table as a JSON-able dict.

    ``networks``: ``{"fp32": net, "int8": quantized net}`` (MindSpore detectors in eval
    mode); a missing one, or an exception in its place (why it could not be built), fails
    its rows. ``dataset``: evaluate on its val split (the first ``max_images``), or None for
    latency only. ``mindspore_size_bytes``: what the MindSpore rows' size column shows (the
    checkpoint file). ``eval_options``: extra keyword arguments of
    :func:`~yoloqat.engine.evaluate.evaluate_source` (the model's ``letterbox`` and
    ``normalize``, thresholds). ``metadata``: extra ONNX metadata of the exported files.
    """
    from yoloqat.engine.evaluate import Subset, load_batches

    if batch < 1 or runs < 1 or warmup < 0:
        raise UsageError(f"batch {batch}, runs {runs}, warmup {warmup}: expected >= 1, >= 1, >= 0")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _export(targets, networks, out, input_size=testing_shape, metadata=metadata)
    for t in targets:
        if t.format == "mindspore" and t.status == STATUS_OK:
            t.size_bytes = mindspore_size_bytes
        if t.status == STATUS_OK:
            _open(t, networks, threads, registry)
    images = 0
    if dataset is not None:
        source = Subset(dataset.val_source(), max_images)
        images = len(source)
        batches = load_batches(source, testing_shape=testing_shape, batch_size=batch)
        options = {"testing_shape": testing_shape, "batch_size": batch, **(eval_options or {})}
        for t in targets:
            if t.predictor is not None:
                _evaluate(t, dataset, batches, source, options)
    x = np.random.default_rng(0).standard_normal((batch, 3, testing_shape, testing_shape))
    _time(targets, x.astype(np.float32), runs=runs, warmup=warmup)
    reference = next(
        (
            t.latency_ms
            for t in targets
            if (t.format, t.precision, t.runtime) == ("mindspore", "fp32", "mindspore")
        ),
        None,
    )
    rows = [_row(t, reference) for t in targets]
    return {
        "testing_shape": testing_shape,
        "batch": batch,
        "threads": threads,
        "runs": runs,
        "images": images,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "rows": rows,
        "fastest": _fastest(rows),
    }


def _fastest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest working row per precision, and the fastest int8 vs ONNX Runtime int8."""
    timed = [r for r in rows if r["latency_ms"]]
    if not timed:
        return None
    best = {}
    for precision in PRECISIONS:
        rs = [r for r in timed if r["precision"] == precision and r["format"] != "mindspore"]
        if rs:
            best[precision] = min(rs, key=lambda r: r["latency_ms"])["runtime"]
    ort_int8 = next(
        (
            r
            for r in timed
            if (r["format"], r["precision"], r["runtime"]) == ("onnx", "int8", "onnxruntime")
        ),
        None,
    )
    if "int8" in best and ort_int8:
        fastest = min(
            (r for r in timed if r["precision"] == "int8" and r["format"] != "mindspore"),
            key=lambda r: r["latency_ms"],
        )
        best["int8_vs_onnxruntime_int8"] = round(ort_int8["latency_ms"] / fastest["latency_ms"], 3)
    return best
