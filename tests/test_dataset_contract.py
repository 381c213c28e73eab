"""The dataset contract: bundled datasets conform, violations name plugin, kind and member."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yoloqat.core.contracts import dataset as contract
from yoloqat.core.contracts.dataset import (
    CheckedDataset,
    Dataset,
    DataSource,
    check_dataset,
    check_source,
)
from yoloqat.core.errors import PluginError
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.pipeline import build_dataset

REPO = Path(__file__).resolve().parents[1]


class _Source:
    def __len__(self) -> int:
        return 1

    def load(self, index):
        raise NotImplementedError

    def image_path(self, index):
        return Path("x.jpg")


class _Dataset:
    class_names = ("a", "b")
    num_classes = 2
    category_ids = (1, 1)

    def train_source(self):
        return _Source()


def test_missing_members_are_named() -> None:
    with pytest.raises(PluginError) as err:
        check_dataset(_Dataset(), plugin="acme", name="toy")
    msg = str(err.value)
    assert "dataset 'toy' from plugin 'acme'" in msg and "missing method 'val_source'" in msg
    assert err.value.exit_code == 4
    with pytest.raises(PluginError, match=r"train source 'toy' .* missing method 'annotations'"):
        check_source(_Source(), plugin="acme", name="toy", split="train")


def test_checked_dataset_checks_class_list_and_sources_on_first_use() -> None:
    class Full(_Dataset):
        def val_source(self):
            return _Source()

    ds = CheckedDataset(Full(), plugin="acme", name="toy")
    with pytest.raises(PluginError, match="category_ids are not unique"):
        ds.num_classes  # noqa: B018
    with pytest.raises(PluginError, match=r"val source 'toy' from plugin 'acme'.*'annotations'"):
        ds.val_source()
    Full.category_ids = (1, 2, 3)
    with pytest.raises(PluginError, match="2 class_names and 3 category_ids for 2 classes"):
        CheckedDataset(Full(), plugin="acme", name="toy").category_ids  # noqa: B018


def test_bundled_datasets_conform(tmp_path: Path) -> None:
    make_synthetic_coco(tmp_path, train=2, val=2, size=64, seed=1, num_classes=2)
    ds = build_dataset({"dataset": {"name": "coco", "data_dir": str(tmp_path)}})
    assert isinstance(ds, CheckedDataset) and isinstance(ds.wrapped, Dataset)
    assert ds.category_ids == [1, 2] and ds.class_names == ["circle", "square"]
    for source in (ds.train_source(), ds.val_source()):
        assert isinstance(source, DataSource)
        sample = source.load(0)
        assert sample.image.dtype.name == "uint8" and sample.boxes.shape[1] == 5
        (rec, *_) = source.annotations()
        assert rec.image_id == sample.image_id and rec.boxes.shape[1] == 4
    assert "coco" in repr(ds)


def test_every_protocol_member_is_documented() -> None:
    for proto, members in (
        (contract.Dataset, contract.DATASET_MEMBERS),
        (contract.DataSource, contract.SOURCE_MEMBERS),
    ):
        for name in members:
            member = inspect.getattr_static(proto, name)
            doc = inspect.getdoc(member.fget if isinstance(member, property) else member)
            assert doc and len(doc) > 20, f"{proto.__name__}.{name} has no docstring"
    for record in (contract.Sample, contract.ImageAnnotations):
        doc = inspect.getdoc(record) or ""
        fields = (
            record._fields
            if hasattr(record, "_fields")
            else [f.name for f in dataclasses.fields(record)]
        )
        for name in fields:
            assert f"{name}" in doc.split("Attributes:")[1], f"{record.__name__}.{name}"


# -- a broken third-party plugin through the CLI ----------------------------------------

BROKEN = '''
from pathlib import Path

from yoloqat import hookimpl


class NoAnnotations:
    def __len__(self):
        return 4

    def load(self, index):
        raise RuntimeError("never reached")

    def image_path(self, index):
        return Path("x.jpg")


class Data:
    class_names = ["a", "b", "c", "d", "e"]
    num_classes = 5
    category_ids = [0, 1, 2, 3, 4]

    def __init__(self, complete):
        if complete:
            self.val_source = self.train_source

    def train_source(self):
        return NoAnnotations()


def no_val(*, data_dir: str = "."):
    """A dataset without val_source."""
    return Data(False)


def no_annotations(*, data_dir: str = "."):
    """A dataset whose source has no annotations()."""
    return Data(True)


@hookimpl
def yoloqat_datasets():
    return {"no_val": no_val, "no_annotations": no_annotations}
'''


@pytest.fixture(scope="module")
def broken_plugin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "yq_broken_data.py").write_text(textwrap.dedent(BROKEN))
    info = root / "yq_broken_data-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: yq-broken-data\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[yoloqat.plugins]\nyq_broken_data = yq_broken_data\n")
    return root


def _train(site: Path, dataset: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    args = ["train", "--config", "synth_tiny", "--ckpt_path", str(tmp_path)]
    for kv in (f"dataset.name={dataset}", "model.backbone.width=0.0625", "model.head.width=0.0625"):
        args += ["--set", kv]
    return subprocess.run(
        [sys.executable, "-m", "yoloqat", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def test_a_dataset_missing_a_member_fails_with_exit_4(broken_plugin: Path, tmp_path: Path) -> None:
    res = _train(broken_plugin, "no_val", tmp_path)
    assert res.returncode == 4, res.stderr[-2000:]
    assert "dataset 'no_val' from plugin 'yq_broken_data'" in res.stderr
    assert "missing method 'val_source'" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_source_missing_a_member_fails_with_exit_4(broken_plugin: Path, tmp_path: Path) -> None:
    res = _train(broken_plugin, "no_annotations", tmp_path)
    assert res.returncode == 4, res.stderr[-2000:]
    assert "train source 'no_annotations' from plugin 'yq_broken_data'" in res.stderr
    assert "missing method 'annotations'" in res.stderr
