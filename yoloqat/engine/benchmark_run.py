"""Benchmark one model every way (``yoloqat benchmark``, ``Model.benchmark``): export it to
each (format, precision, runtime), evaluate and time every row, write the files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def mindspore_threads(threads: int) -> None:
    """MindSpore's CPU kernels on ``threads`` threads, like the ONNX rows (where it allows)."""
    try:
        from mindspore.device_context.cpu import op_tuning

        op_tuning.threads_num(threads)
    except Exception as exc:  # set once per process, before the first kernel runs
        from yoloqat.core import events

        events.warn(f"MindSpore keeps its own thread count ({type(exc).__name__}: {exc})")


def benchmark_model(
    checkpoint: str | Path | None = None,
    *,
    config: str | None = None,
    data_dir: str | None = None,
    dataset: str | None = None,
    images: str | None = None,
    annotations: str | None = None,
    accuracy: bool = True,
    max_images: int | None = None,
    runtimes: Sequence[str] | None = None,
    formats: Sequence[str] = ("mindspore", "onnx"),
    precisions: Sequence[str] = ("fp32", "int8"),
    testing_shape: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    calibration_images: int = 32,
    letterbox: bool | None = None,
    output: str | Path = "outputs/benchmark",
    overrides: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Path]]:
    """One row per (format, precision, runtime) of ``checkpoint`` (without one: the config's
    network with random weights, latency only unless data is given): file size, AP and
    AP50 on the val data (``accuracy``), ms/img and img/s (rows alternated, median of
    ``runs``), speed-up. Writes ``benchmark.json``, ``.md`` and ``.png`` into ``output`` and
    returns the result and the files. A row whose export or evaluation fails says so in its
    ``status``; the others still run."""
    output = Path(output)
    checkpoint = str(checkpoint) if checkpoint is not None else None
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.device import init_device
    from yoloqat.core.errors import UsageError
    from yoloqat.engine.benchmark import plan, run_benchmark
    from yoloqat.engine.benchmark_files import write_outputs
    from yoloqat.engine.benchmark_models import benchmark_networks, noise_batches
    from yoloqat.engine.evaluate import dataset_overrides, eval_dataset
    from yoloqat.engine.export import model_metadata
    from yoloqat.engine.inference import default_testing_shape, effective_config, preprocessing
    from yoloqat.engine.runtimes import runtime_names

    targets = plan(list(formats), list(precisions), list(runtimes or runtime_names()))
    for name, value, low in (
        ("batch", batch, 1),
        ("runs", runs, 1),
        ("warmup", warmup, 0),
        ("calibration_images", calibration_images, 1),
    ):
        if value < low:
            raise UsageError(f"--{name} {value} is not valid; expected an integer >= {low}")
    if max_images is not None and max_images < 1:
        raise UsageError(f"--max_images {max_images} is not valid; expected an integer >= 1")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} is not valid; expected an integer >= 1")
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    dataset_overrides({}, data_dir, images, annotations, dataset)  # flag clashes first
    prepare_output(output, "--output")
    init_device("CPU")
    if threads is not None:
        mindspore_threads(threads)
    explicit = config is not None
    cfg = load_config(config or "yolov3_darknet53", list(overrides))  # checked with the overrides
    want_data = accuracy and (checkpoint is not None or data_dir or images)

    def shape(meta: dict[str, Any]) -> int:
        if testing_shape is not None:
            return testing_shape
        return default_testing_shape(cfg, meta, explicit=explicit)

    datasets: dict[str, Any] = {}

    def val_data(meta: dict[str, Any]) -> Any:
        if "data" not in datasets:
            datasets["data"] = eval_dataset(
                cfg,
                meta,
                explicit=explicit,
                data_dir=data_dir,
                images=images,
                annotations=annotations,
                overrides=list(overrides),
                dataset=dataset,
            )
        return datasets["data"]

    def calibration(_used: dict[str, Any], meta: dict[str, Any]) -> Any:
        from yoloqat.core import events
        from yoloqat.engine.evaluate import Subset, load_batches

        size = shape(meta)
        if not want_data:
            return noise_batches(calibration_images, size, batch=8)
        data = val_data(meta)
        try:
            source = data.train_source()
            empty = len(source) == 0
        except Exception:
            empty = True
        if empty:
            events.warn("no training images: the int8 model is calibrated on val images")
            source = data.val_source()
        source = Subset(source, calibration_images)
        return (b["image"] for b in load_batches(source, testing_shape=size, batch_size=8))

    networks, meta, int8_source = benchmark_networks(
        cfg, checkpoint, explicit=explicit, calibration=calibration
    )
    data = val_data(meta) if want_data else None
    size = shape(meta)
    prep = preprocessing(effective_config(cfg, meta, explicit=explicit))
    if letterbox is not None:
        prep["letterbox"] = letterbox
    result = run_benchmark(
        networks,
        targets,
        testing_shape=size,
        output_dir=output,
        dataset=data,
        max_images=max_images,
        batch=batch,
        threads=threads,
        runs=runs,
        warmup=warmup,
        eval_options=prep,
        metadata={
            **model_metadata(effective_config(cfg, meta, explicit=explicit), meta),
            "letterbox": str(prep["letterbox"]).lower(),  # as measured (--letterbox)
        },
        mindspore_size_bytes=Path(checkpoint).stat().st_size if checkpoint else None,
    )
    result["checkpoint"] = checkpoint
    result["int8_source"] = int8_source
    files = write_outputs(result, output)
    return result, files
