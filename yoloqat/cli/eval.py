"""``yoloqat eval``: COCO mAP of a checkpoint (or an exported ONNX model), seed flags included."""

from __future__ import annotations

from typing import Any, Optional

import typer

from yoloqat.cli.common import RUNTIME_HELP, SET_HELP, check_inputs, handle_errors, opt


def eval_command(
    config: Optional[str] = opt(
        None,
        "config",
        help="Config file or bundled name (default: the checkpoint's own).",
    ),
    pretrained: Optional[str] = opt(
        None, "pretrained", "checkpoint", help="Checkpoint to evaluate (.ckpt)."
    ),
    onnx: Optional[str] = opt(
        None, "onnx", help="Evaluate an exported model instead (ONNX, or OpenVINO IR .xml)."
    ),
    runtime: Optional[str] = opt(None, "runtime", help=RUNTIME_HELP),
    data_dir: Optional[str] = opt(
        None,
        "data_dir",
        help="Dataset root for the config's (or checkpoint's) dataset plugin, e.g. the COCO "
        "2014 root of the seed configs. Without a config or checkpoint dataset (--onnx), the "
        "plugin is told from the layout: annotations/instances_*2014.json -> coco2014, "
        "annotations/instances_{train,val}.json -> coco, Annotations/ + JPEGImages/ -> voc, "
        "images/ + labels/ (or a data .yaml) -> yolo.",
    ),
    dataset: Optional[str] = opt(
        None,
        "dataset",
        help="Dataset plugin for --data_dir (coco2014, coco, yolo, voc or a third-party one), "
        "replacing the config's dataset block; more parameters with --set dataset.KEY=VALUE.",
    ),
    images: Optional[str] = opt(
        None, "images", help="Any image folder (with --annotations): a generic COCO dataset."
    ),
    annotations: Optional[str] = opt(None, "annotations", help="COCO instances json for --images."),
    testing_shape: Optional[int] = opt(
        None,
        "testing_shape",
        help="Square input size, a multiple of 32 (default: the ONNX model's size, else the "
        "checkpoint config's eval.testing_shape, else 416).",
    ),
    per_batch_size: int = opt(1, "per_batch_size", help="Images per batch."),
    ignore_threshold: Optional[float] = opt(
        None,
        "ignore_threshold",
        "conf",
        help="Score threshold (obj x cls for YOLO; --conf as predict names it; default: the "
        "config's eval.score_threshold, else 0.001).",
    ),
    nms_thresh: Optional[float] = opt(
        None,
        "nms_thresh",
        "iou",
        help="Per-class NMS IoU threshold (default: eval.nms_threshold, else 0.5).",
    ),
    multi_label: Optional[bool] = typer.Option(
        None,
        "--multi_label/--single_label",
        "--multi-label/--single-label",
        help="Score every class above the threshold, not only the best (default: "
        "eval.multi_label, else single).",
    ),
    letterbox: Optional[bool] = typer.Option(
        None,
        "--letterbox/--no-letterbox",
        help="Letterbox (keep the aspect, pad gray) or the seed's stretch resize (default: "
        "the model's eval.letterbox; an imported Darknet model letterboxes).",
    ),
    num_workers: int = opt(1, "num_workers", help="Image-decoding worker processes."),
    output: str = opt(
        "outputs/eval",
        "output",
        help="Folder of the evaluation runs: each eval writes a new folder there, named by "
        "its start time (_2, _3 when taken), with eval.json, predictions.json, pr_curve.png "
        "and confusion_matrix.png.",
    ),
    device_target: str = opt("CPU", "device_target", help="CPU, GPU or Ascend."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Evaluate COCO mAP: the seed's 12-line summary, then what was evaluated, AP and P/R per
    class and the speed; saves them with the detections and two pictures in a new folder.

    Data: --images/--annotations, else --dataset/--data_dir, else the config's or checkpoint's.
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.errors import ConfigError, UsageError
    from yoloqat.core.schema import check_sections
    from yoloqat.engine.evaluate import dataset_overrides, evaluate_model
    from yoloqat.engine.model import load

    if (pretrained is None) == (onnx is None):
        raise UsageError("give exactly one of --pretrained CKPT or --onnx MODEL")
    if runtime is not None and onnx is None:
        raise UsageError("--runtime runs an exported model: use it with --onnx MODEL")
    if config is None and set_:  # for the checkpoint's config: a misspelt key fails first
        check_sections(apply_overrides({}, set_))
    dataset_overrides({}, data_dir, images, annotations, dataset)  # clashes fail before loading
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    # a wrong threshold fails before the model is loaded
    if ignore_threshold is not None and not 0.0 <= ignore_threshold <= 1.0:
        raise ConfigError(
            f"--conf/--ignore_threshold {ignore_threshold!r} is not valid; expected a score "
            "in [0, 1]"
        )
    if nms_thresh is not None and not 0.0 < nms_thresh <= 1.0:
        raise ConfigError(
            f"--iou/--nms_thresh {nms_thresh!r} is not valid; expected an IoU in (0, 1]"
        )
    cfg: dict[str, Any] | None = None  # the checkpoint's own unless --config
    if config is not None:
        cfg = load_config(config, set_)  # checked once, with the overrides
    check_inputs(checkpoint=pretrained, onnx=onnx)  # after the flags' values are checked
    prepare_output(output, "--output", run_folders=True)  # before the evaluation, not after
    if pretrained is not None:
        model = load(pretrained, config=cfg, device=device_target)
    else:  # the runtime by default: onnxruntime for .onnx, openvino for an IR .xml
        assert onnx is not None  # exactly one of the two, checked above
        model = load(onnx, runtime=runtime, exported=True)
    result = evaluate_model(
        model,
        data_dir=data_dir,
        dataset=dataset,
        images=images,
        annotations=annotations,
        config=cfg,
        overrides=set_ if cfg is None else (),
        imgsz=testing_shape,
        batch=per_batch_size,
        conf=ignore_threshold,
        iou=nms_thresh,
        multi_label=multi_label,
        letterbox=letterbox,
        num_workers=num_workers,
        output=output,
        defer_write_errors=True,
    )
    typer.echo(result.summary)
    print_report(result)
    write_error = result.extra.pop("write_error", None)
    if write_error is not None:  # the numbers are printed; saving them failed
        raise write_error
    files = ", ".join(result.extra.get("files", []))
    typer.echo(f"results: {result.extra.get('folder')} ({files})", err=True)


def print_report(result: Any) -> None:
    """After the summary, on stdout (data): the header, the per-class table, the speed."""
    from rich.table import Table

    from yoloqat.cli.render import out_console
    from yoloqat.engine.eval_report import (
        COLUMNS,
        header_lines,
        speed_line,
        table_rows,
        table_title,
    )

    typer.echo("")
    for line in header_lines(result):
        typer.echo(line)
    typer.echo(table_title(result))
    table = Table()
    for i, (heading, _, _) in enumerate(COLUMNS):
        table.add_column(heading, justify="left" if i == 0 else "right")
    for i, row in enumerate(table_rows(result)):
        table.add_row(*row, style="bold" if i == 0 else None, end_section=i == 0)
    out_console.print(table)
    line = speed_line(result)
    if line:
        typer.echo(line)


__all__ = ["eval_command", "print_report", "register"]


def register(app: typer.Typer) -> None:
    app.command("eval")(handle_errors(eval_command))
