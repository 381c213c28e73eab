"""``yoloqat synth``: write the synthetic shapes dataset (COCO format)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from yoloqat.cli.common import handle_errors


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write (created if missing)."),
    train: int = typer.Option(400, "--train", min=0, help="Number of training images."),
    val: int = typer.Option(100, "--val", min=0, help="Number of validation images."),
    size: int = typer.Option(128, "--size", min=32, help="Image side in pixels (square)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same files."),
    classes: int = typer.Option(5, "--classes", min=1, max=8, help="Number of shape classes."),
    force: bool = typer.Option(
        False, "--force", help="Write into OUT_DIR even if it already has annotations."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a synthetic COCO-format dataset of coloured shapes (train + val, JPEG + json).

    It is small and easy: a small YOLO learns it in minutes on CPU, which makes it the
    default data of the demo and the tests. Read it back with the `coco` dataset plugin:
    `dataset: {name: coco, data_dir: OUT_DIR}`.
    """
    from yoloqat.core.atomic import prepare_output
    from yoloqat.core.errors import UsageError
    from yoloqat.data.synth import make_synthetic_coco

    prepare_output(out_dir, "OUT_DIR")  # before writing: a read-only folder is one clear line
    for sub in ("annotations", "train", "val"):
        if (Path(out_dir) / sub).is_dir():
            prepare_output(Path(out_dir) / sub, "folder")
    existing = sorted(Path(out_dir).glob("annotations/instances_*.json"))
    if existing and not force:
        raise UsageError(
            f"{out_dir} already holds a dataset ({existing[0]})",
            hint="pass --force to overwrite it, or choose another folder",
        )
    result = make_synthetic_coco(
        out_dir, train=train, val=val, size=size, seed=seed, num_classes=classes
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"wrote {result['root']}  classes: {', '.join(result['classes'])}")
    for split in ("train", "val"):
        if split in result:
            info = result[split]
            typer.echo(
                f"  {split}: {info['num_images']} images, {info['num_boxes']} boxes  "
                f"({info['images']}, {info['annotations']})"
            )
    typer.echo(f"use it with:  dataset: {{name: coco, data_dir: {result['root']}}}")


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command."""
    app.command("synth")(handle_errors(synth))
