"""``yoloqat benchmark``: every (format, precision, runtime) of one model in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import SET_HELP, handle_errors, opt


def _names(value: str, what: str) -> list[str]:
    from yoloqat.core.errors import UsageError

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError(f"--{what} is empty; give a comma-separated list")
    return names


def render_table(result: dict[str, Any]) -> Any:
    """The benchmark as a Rich table (failed rows in red, the fastest int8 row in bold)."""
    from rich.table import Table

    from yoloqat.engine.benchmark_files import COLUMNS, cell, title

    table = Table(title=f"yoloqat benchmark: {title(result)}", title_style="bold")
    for name, key, _ in COLUMNS:
        table.add_column(
            name, justify="left" if key in ("format", "precision", "runtime", "status") else "right"
        )
    fastest = (result.get("fastest") or {}).get("int8")
    for row in result["rows"]:
        style = None
        if row["status"] != "ok":
            style = "red"
        elif row["precision"] == "int8" and row["runtime"] == fastest and row["format"] == "onnx":
            style = "bold green"
        table.add_row(*(cell(row, key, fmt) for _, key, fmt in COLUMNS), style=style)
    return table


def benchmark(
    checkpoint: Optional[str] = opt(
        None,
        "checkpoint",
        help="Checkpoint (float, QAT or PTQ). Without one: the config's network with random "
        "weights (latency only, unless data is given).",
    ),
    config: Optional[str] = opt(
        None, "config", help="Config (default: the checkpoint's own, else yolov3_darknet53)."
    ),
    data_dir: Optional[str] = opt(None, "data_dir", help="Dataset root for the config's dataset."),
    dataset: Optional[str] = opt(None, "dataset", help="Dataset plugin for --data_dir."),
    images: Optional[str] = opt(None, "images", help="Val image folder (with --annotations)."),
    annotations: Optional[str] = opt(None, "annotations", help="COCO instances json."),
    accuracy: bool = typer.Option(
        True, "--accuracy/--no-accuracy", help="Evaluate AP on the val set (else latency only)."
    ),
    max_images: Optional[int] = opt(
        None, "max_images", help="Evaluate on the first N val images (default: all)."
    ),
    runtimes: Optional[str] = opt(
        None,
        "runtimes",
        help="Runtimes for the ONNX rows, comma separated (default: every registered one; "
        "yoloqat list runtime).",
    ),
    formats: str = opt("mindspore,onnx", "formats", help="mindspore and/or onnx."),
    precisions: str = opt("fp32,int8", "precisions", help="fp32 and/or int8."),
    testing_shape: Optional[int] = opt(
        None, "testing_shape", help="Square input size (default: the checkpoint's, else 416)."
    ),
    batch: int = opt(1, "batch", help="Images per call (latency is reported per image)."),
    threads: Optional[int] = opt(
        None, "threads", help="Threads per runtime (default: each runtime's own, all cores)."
    ),
    runs: int = opt(10, "runs", help="Timed rounds (rows alternate within each round)."),
    warmup: int = opt(2, "warmup", help="Untimed rounds first."),
    calibration_images: int = opt(
        32,
        "calibration_images",
        help="Training images calibrating the int8 (int8_ptq) model of a float checkpoint.",
    ),
    letterbox: Optional[bool] = typer.Option(
        None,
        "--letterbox/--no-letterbox",
        help="Letterbox or the seed's stretch resize (default: the model's eval.letterbox).",
    ),
    output: Path = opt(
        Path("outputs/benchmark"),
        "output",
        help="Folder for the model files, benchmark.json, .md and .png.",
    ),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Export and run one model every way: size, AP, AP50, ms/img, img/s, speed-up.

    One row per (format, precision, runtime): MindSpore fp32 and int8 (fake-quant), ONNX
    fp32 and int8 QDQ on each runtime. A row whose export or evaluation fails says so and
    the others still run. Latency: the same fixed input, rows alternated, median of --runs.
    """
    from yoloqat.cli.render import out_console
    from yoloqat.engine.benchmark_files import NOTE
    from yoloqat.engine.benchmark_run import benchmark_model

    result, files = benchmark_model(
        checkpoint,
        config=config,
        data_dir=data_dir,
        dataset=dataset,
        images=images,
        annotations=annotations,
        accuracy=accuracy,
        max_images=max_images,
        runtimes=_names(runtimes, "runtimes") if runtimes is not None else None,
        formats=_names(formats, "formats"),
        precisions=_names(precisions, "precisions"),
        testing_shape=testing_shape,
        batch=batch,
        threads=threads,
        runs=runs,
        warmup=warmup,
        calibration_images=calibration_images,
        letterbox=letterbox,
        output=output,
        overrides=list(set_),
    )
    # a pipe gets the whole table rather than Rich's 80 columns with truncated cells
    console = out_console
    if not console.is_terminal:
        from rich.console import Console

        console = Console(width=132)
    console.print(render_table(result))
    typer.echo(NOTE, err=True)
    fastest = result.get("fastest") or {}
    if "int8_vs_onnxruntime_int8" in fastest:
        typer.echo(
            f"fastest int8: {fastest['int8']}, {fastest['int8_vs_onnxruntime_int8']:.2f}x ONNX "
            "Runtime int8",
            err=True,
        )
    typer.echo("wrote " + ", ".join(str(p) for p in files.values()), err=True)
    failed = [r for r in result["rows"] if r["status"] != "ok"]
    if failed and len(failed) == len(result["rows"]):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("benchmark")(handle_errors(benchmark))
