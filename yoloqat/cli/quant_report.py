"""``yoloqat quant-report``: float vs fake-quant vs exported int8, and layer sensitivity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import RUNTIME_HELP, handle_errors, opt


def render_table(report: dict[str, Any]) -> Any:
    """A Rich table of the report's rows."""
    from rich.table import Table

    table = Table(title=f"float vs int8 at {report['testing_shape']} px, {report['images']} images")
    for col in ("model", "AP", "AP50", "size", "latency (ms)"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for r in report["rows"]:
        size = f"{r['size_bytes'] / 1e6:.2f} MB" if r["size_bytes"] else "-"
        table.add_row(
            r["model"], f"{r['AP']:.4f}", f"{r['AP50']:.4f}", size, f"{r['latency_ms']:.2f}"
        )
    return table


def build_networks(
    cfg: dict, checkpoint: str, float_checkpoint: Optional[str], explicit: bool
) -> tuple[Any, Any, dict[str, Any]]:
    """(float network, fake-quant network, QAT checkpoint meta); without a float checkpoint
    the float network is the QAT checkpoint with fake quantization switched off."""
    from yoloqat.core.contracts.quantizer import is_quantized, set_fake_quant
    from yoloqat.core.errors import CheckpointError
    from yoloqat.engine.inference import load_detector

    qat_net, _, meta = load_detector(cfg, checkpoint, explicit_config=explicit)
    if not is_quantized(qat_net):
        raise CheckpointError(
            f"{checkpoint} is a float checkpoint; quant-report needs a quantized (QAT or PTQ) "
            "checkpoint",
            hint="fine-tune it first: yoloqat train --config <quant config> --resume_yolov3 CKPT",
        )
    if float_checkpoint:
        float_net, _, _ = load_detector(cfg, float_checkpoint, explicit_config=False)
    else:
        float_net, _, _ = load_detector(cfg, checkpoint, explicit_config=explicit)
        set_fake_quant(float_net, False)
    return float_net, qat_net, meta


def quant_report(
    checkpoint: str = opt(..., "checkpoint", help="QAT checkpoint (.ckpt)."),
    float_checkpoint: Optional[str] = opt(
        None,
        "float_checkpoint",
        help="Float checkpoint to compare with (default: the QAT weights, fake quant off).",
    ),
    ptq_checkpoint: Optional[str] = opt(
        None,
        "ptq_checkpoint",
        help="A post-training-quantized checkpoint (yoloqat calibrate) to compare as well.",
    ),
    config: Optional[str] = opt(None, "config", help="Config (default: the checkpoint's own)."),
    data_dir: Optional[str] = opt(None, "data_dir", help="COCO 2014 root."),
    images: Optional[str] = opt(None, "images", help="Image folder (with --annotations)."),
    annotations: Optional[str] = opt(None, "annotations", help="COCO instances json."),
    testing_shape: Optional[int] = opt(
        None,
        "testing_shape",
        help="Square input size (default: the checkpoint config's eval.testing_shape, else 416).",
    ),
    output: Path = opt(
        Path("outputs/quant_report"), "output", help="Folder for the ONNX files and report.json."
    ),
    sensitivity: bool = typer.Option(
        True,
        "--sensitivity/--no-sensitivity",
        help="Also rank layers by the AP drop when only that layer is quantized.",
    ),
    top: int = opt(10, "top", help="How many of the most sensitive layers to show."),
    sensitivity_images: int = opt(
        50, "sensitivity_images", help="Val images used per sensitivity evaluation."
    ),
    sensitivity_layers: list[str] = opt(
        [], "sensitivity_layers", help="Only layers matching this pattern (repeatable)."
    ),
    repeats: int = opt(10, "repeats", help="Timed runs per latency figure."),
    runtime: str = opt("onnxruntime", "runtime", help=RUNTIME_HELP),
) -> None:
    """Compare float, fake-quant and exported int8 models (and PTQ): AP, AP50, size, latency."""
    from yoloqat.cli.render import out_console
    from yoloqat.core.atomic import prepare_output, write_json
    from yoloqat.core.config import load_config
    from yoloqat.core.detector import check_input_shape
    from yoloqat.core.device import init_device
    from yoloqat.engine.evaluate import dataset_overrides, eval_dataset
    from yoloqat.engine.export import model_metadata
    from yoloqat.engine.inference import default_testing_shape, effective_config, preprocessing
    from yoloqat.engine.report import compare_models, layer_sensitivity
    from yoloqat.engine.runtimes import check_runtime

    dataset_overrides({}, data_dir, images, annotations)  # flag clashes fail before loading
    check_runtime(runtime)  # an unknown runtime fails before any work
    if testing_shape is not None:
        check_input_shape(testing_shape, testing_shape)
    cfg = load_config(config or "yolov3_darknet53")
    prepare_output(output, "--output")  # before the evaluations, not after them
    init_device("CPU")  # its latencies are CPU figures
    explicit = config is not None
    float_net, qat_net, meta = build_networks(cfg, checkpoint, float_checkpoint, explicit)
    dataset = eval_dataset(
        cfg, meta, explicit=explicit, data_dir=data_dir, images=images, annotations=annotations
    )
    if testing_shape is None:
        testing_shape = default_testing_shape(cfg, meta, explicit=explicit)
    ptq_net = None
    if ptq_checkpoint:
        from yoloqat.core.contracts.quantizer import is_quantized
        from yoloqat.core.errors import CheckpointError
        from yoloqat.engine.inference import load_detector

        ptq_net, _, _ = load_detector(cfg, ptq_checkpoint, explicit_config=False)
        if not is_quantized(ptq_net):
            raise CheckpointError(f"--ptq_checkpoint {ptq_checkpoint} is a float checkpoint")
    report = compare_models(
        float_net,
        qat_net,
        dataset,
        testing_shape=testing_shape,
        output_dir=output,
        float_checkpoint=float_checkpoint,
        qat_checkpoint=checkpoint,
        repeats=repeats,
        ptq_net=ptq_net,
        ptq_checkpoint=ptq_checkpoint,
        runtime=runtime,
        preprocess=preprocessing(effective_config(cfg, meta, explicit=explicit)),
        metadata=model_metadata(effective_config(cfg, meta, explicit=explicit), meta),
    )
    write_json(output / "report.json", report)
    out_console.print(render_table(report))
    if sensitivity:
        report["sensitivity"] = layer_sensitivity(
            qat_net,
            dataset,
            testing_shape=testing_shape,
            top=top,
            max_images=sensitivity_images,
            patterns=tuple(sensitivity_layers) or ("*",),
            preprocess=preprocessing(effective_config(cfg, meta, explicit=explicit)),
        )
        write_json(output / "report.json", report)
    for row in report.get("sensitivity", []):
        out_console.print(f"  {row['layer']:<40} AP drop {row['AP_drop']:+.4f}")
    typer.echo(f"report: {output / 'report.json'}", err=True)


def register(app: typer.Typer) -> None:
    app.command("quant-report")(handle_errors(quant_report))
