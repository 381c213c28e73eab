"""``yoloqat import-darknet`` and ``yoloqat export-darknet``: Darknet ``.weights`` files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from yoloqat.cli.common import SET_HELP, handle_errors, opt


def import_darknet(
    weights: Path = typer.Argument(..., help="Darknet .weights file (yolov3.weights, ...)."),
    output: Path = opt(..., "output", help="Checkpoint to write (.ckpt)."),
    backbone_only: bool = opt(
        False,
        "backbone_only",
        help="The file is a backbone (darknet53.conv.74); write only backbone.* tensors.",
    ),
    num_classes: Optional[int] = opt(
        None, "num_classes", help="Classes of the detector file (default: the config's, 80)."
    ),
    config: Optional[str] = opt(
        None, "config", help="Config describing the network (default: yolov3_darknet53)."
    ),
    cfg: Optional[Path] = opt(
        None,
        "cfg",
        help="The Darknet .cfg of the weights (yolov3.cfg, yolov3-tiny.cfg, yolov4-tiny.cfg, "
        "...): the network is built from its sections (Darknet's YOLOv3 layout as the bundled "
        "darknet53 + yolov3_head); classes, anchors and input size come from it.",
    ),
    names: Optional[Path] = opt(
        None,
        "names",
        help="Class names, one a line (Darknet's .names). Default: the .cfg's yoloqat "
        "metadata, else COCO's 80 names for 80 classes, else class0..classN-1.",
    ),
    cfg_graph: bool = opt(
        False,
        "cfg_graph",
        help="Build the .cfg's own graph even for the YOLOv3 layout (default there: the "
        "bundled darknet53 + yolov3_head network).",
    ),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Convert a Darknet model (.weights + .cfg) into a ready yoloqat checkpoint.

    Its stored config computes what Darknet computes (the .cfg's layers, BN eps 1e-6,
    RGB/255 input, letterbox, the .cfg's anchors and scale_x_y) and it stores the class
    names, so `eval --pretrained CKPT`, `predict`, `export`, `calibrate`, `quant-report`,
    `benchmark` and QAT (`train --config QUANT.yaml --resume_yolov3 CKPT`) use it with no
    more flags; a --backbone-only checkpoint starts training via --resume_yolov3.
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.engine.darknet import import_darknet as run

    prepare_output(output.parent, "--output folder")
    summary = run(
        weights,
        output,
        config=config,
        overrides=set_,
        num_classes=num_classes,
        backbone_only=backbone_only,
        cfg_file=cfg,
        names=names,
        cfg_graph=cfg_graph,
    )
    typer.echo(
        f"read {summary['convs']} conv layers ({summary['floats']} values) from {weights}; "
        f"wrote {output}",
        err=True,
    )
    typer.echo(json.dumps(summary))


def export_darknet(
    checkpoint: Path = typer.Argument(..., help="Float yoloqat checkpoint (.ckpt)."),
    output: Path = opt(..., "output", help="Darknet .weights file to write."),
    backbone_only: bool = opt(
        False, "backbone_only", help="Write only the backbone convs (like darknet53.conv.74)."
    ),
    config: Optional[str] = opt(
        None, "config", help="Config of the network (default: the one stored in the checkpoint)."
    ),
    cfg: Optional[Path] = opt(
        None,
        "cfg",
        help="Also write the network's Darknet .cfg here (with the class names, input "
        "normalisation, letterbox and BN eps in a '# yoloqat:' comment line).",
    ),
    names: Optional[Path] = opt(
        None, "names", help="Also write the class names here, one a line (Darknet's .names)."
    ),
) -> None:
    """Write a float yoloqat checkpoint as a Darknet .weights file (version 0.2.0).

    With --cfg, the pair reproduces the model: Darknet and OpenCV DNN read it, and
    `import-darknet OUT.weights --cfg OUT.cfg` gives back the same outputs, preprocessing
    and class names (bit-exact weights).
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.engine.darknet import export_darknet as run

    for target, what in ((output, "--output"), (cfg, "--cfg"), (names, "--names")):
        if target is not None:
            prepare_output(target.parent, f"{what} folder")
    summary = run(
        checkpoint, output, config=config, backbone_only=backbone_only, cfg_file=cfg, names=names
    )
    typer.echo(
        f"wrote {summary['convs']} conv layers ({summary['bytes']} bytes) to {output}", err=True
    )
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    """Add the ``import-darknet`` and ``export-darknet`` commands."""
    app.command("import-darknet")(handle_errors(import_darknet))
    app.command("export-darknet")(handle_errors(export_darknet))
