"""Weight EMA and resume semantics on the tiny synthetic run.

One 2-epoch run with ``train.ema`` and a checkpoint after every step (8 of them) is the
record: each checkpoint holds the raw weights after step ``t`` and their average, so the
average is checked against its closed form step by step; a run resumed mid-way must end
with the same average; the finished run extended to 4 epochs through the CLI must follow
the schedule rebuilt over 4 epochs; changes a resume cannot follow are errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_cfg

from yoloqat.core.errors import ConfigError
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint, weights_only
from yoloqat.engine.training.ema import decay_at
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow

DECAY, RAMP = 0.9, 2.0  # d_t = 0.9 * (1 - exp(-t / 2)): from 0.35 at t=1 to 0.88 at t=8
EMA = (f"train.ema.decay={DECAY}", f"train.ema.ramp={RAMP}")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=4, size=64, seed=3, num_classes=3)
    return out


@pytest.fixture(autouse=True)
def _graph_mode_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _cfg(synth: Path, out: Path, *extra: str) -> dict:
    return tiny_cfg(synth, out, *EMA, "train.ckpt_interval=1", *extra)


@pytest.fixture(scope="module")
def run_a(synth, tmp_path_factory) -> tuple[Trainer, Path]:
    """The EMA run: 2 epochs of 4 steps, a checkpoint after each step."""
    out = tmp_path_factory.mktemp("ema")
    trainer = Trainer(_cfg(synth, out), run_dir=out / "a")
    res = trainer.run()
    assert res.global_step == 8
    return trainer, out / "a" / "ckpt_0"


def _ckpt(folder: Path, step: int) -> Path:
    return folder / f"0-{(step - 1) // 4 + 1}_{step}.ckpt"


def test_ema_weights_are_the_closed_form_average(synth, run_a, tmp_path) -> None:
    trainer, folder = run_a
    names = trainer.ema.names
    assert "backbone.conv0.conv.weight" in names and "backbone.conv0.bn.moving_mean" in names
    start = Trainer(_cfg(synth, tmp_path), run_dir=tmp_path / "init")  # same seed: w_0
    start._build()
    expected = {p.name: p.asnumpy().astype(np.float64) for p in start.network.get_parameters()}
    for t in range(1, 9):
        params, _ = read_checkpoint(_ckpt(folder, t))
        assert int(params["ema.updates"].asnumpy()) == t
        d = float(decay_at(t, DECAY, RAMP))
        for name in names:
            expected[name] = d * expected[name] + (1 - d) * params[name].asnumpy()
            np.testing.assert_allclose(
                params["ema." + name].asnumpy(), expected[name], rtol=1e-5, atol=1e-6,
                err_msg=f"{name} at step {t}",
            )  # fmt: skip
    raw = {n: params[n].asnumpy() for n in names}
    moved = [n for n in names if not np.allclose(raw[n], expected[n], rtol=1e-3, atol=1e-5)]
    assert len(moved) > len(names) // 2  # the average is not the raw weights

    # inference loading (eval/predict/export) takes the average, resume the raw weights
    from yoloqat.engine.inference import load_detector

    last = _ckpt(folder, 8)
    network, _, _ = load_detector(trainer.cfg, last)
    loaded = {p.name: p.asnumpy() for p in network.get_parameters()}
    for name in names:
        np.testing.assert_array_equal(loaded[name], params["ema." + name].asnumpy())
    assert weights_only(params, ema=False)[moved[0]] is params[moved[0]]

    # the API validation uses: the EMA weights inside the block, the raw ones after it
    with trainer.ema.swapped_in() as net:
        inside = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    after = {p.name: p.asnumpy() for p in trainer.network.get_parameters()}
    for name in names:
        np.testing.assert_array_equal(inside[name], params["ema." + name].asnumpy())
        np.testing.assert_array_equal(after[name], raw[name])


def test_resume_continues_the_average(synth, run_a, tmp_path) -> None:
    _trainer, folder = run_a
    resumed = Trainer(_cfg(synth, tmp_path), resume=_ckpt(folder, 3), run_dir=tmp_path / "b")
    assert resumed.run().global_step == 8
    full, _ = read_checkpoint(_ckpt(folder, 8))
    again, _ = read_checkpoint(tmp_path / "b" / "ckpt_0" / "0-2_8.ckpt")
    ema_names = [n for n in full if n.startswith("ema.")]
    averaged = set(_trainer.ema.names)  # every trainable weight, BN statistics included
    assert {p.name for p in _trainer.network.trainable_params()} <= averaged
    assert {"ema." + n for n in averaged} <= set(ema_names)
    assert int(again["ema.updates"].asnumpy()) == 8
    for name in ema_names:
        np.testing.assert_allclose(
            again[name].asnumpy(), full[name].asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name
        )


def test_extending_a_finished_run_rebuilds_the_schedule(run_a, tmp_path) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app
    from yoloqat.engine.pipeline import build_scheduler

    trainer, folder = run_a
    finished = tmp_path / "c" / "ckpt_0" / "0-2_8.ckpt"  # a copy: the run folder is joined
    finished.parent.mkdir(parents=True)
    shutil.copy(_ckpt(folder, 8), finished)
    # no --config: the checkpoint's own config, with max_epoch raised from 2 to 4
    out = CliRunner().invoke(app, ["train", "--resume", str(finished), "--max_epoch", "4"])
    assert out.exit_code == 0, out.output[-2000:]
    assert "last checkpoint: " + str(tmp_path / "c" / "ckpt_0" / "last.ckpt") in out.stdout
    assert (tmp_path / "c" / "ckpt_0" / "last.ckpt").samefile(_ckpt(tmp_path / "c" / "ckpt_0", 16))
    rebuilt = build_scheduler(trainer.cfg).per_step(4, 4)
    assert len(rebuilt) == 16
    records = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    steps = {r["global_step"]: r for r in records if r["kind"] == "step"}
    assert sorted(steps) == list(range(9, 17)) and {steps[g]["epoch"] for g in steps} == {3, 4}
    lrs = np.array([steps[g]["lr"] for g in range(9, 17)])
    np.testing.assert_allclose(lrs, rebuilt[8:16], rtol=1e-6)
    # cosine over 4 epochs (T_max raised from 2), no warmup: epochs 2 and 3 of lr 0.005
    np.testing.assert_allclose(
        lrs, [0.0025] * 4 + [0.005 * (1 + np.cos(3 * np.pi / 4)) / 2] * 4, rtol=1e-5
    )
    params, meta = read_checkpoint(tmp_path / "c" / "ckpt_0" / "0-4_16.ckpt")
    np.testing.assert_allclose(params["learning_rate"].asnumpy(), rebuilt, rtol=1e-6)
    assert meta["config"]["train"]["max_epoch"] == 4 and meta["global_step"] == 16
    assert int(params["ema.updates"].asnumpy()) == 16  # the average went on too


def test_resume_refuses_changes_it_cannot_follow(synth, run_a, tmp_path) -> None:
    _trainer, folder = run_a
    link = tmp_path / "same_data"
    link.symlink_to(synth)
    mid, last = _ckpt(folder, 3), _ckpt(folder, 8)
    cases = [
        (mid, ["train.per_batch_size=2"], "train.per_batch_size=4 (this run: 2)"),
        (mid, [f"dataset.data_dir={link}"], f"dataset.data_dir='{synth}' (this run: '{link}')"),
        (mid, ["train.max_epoch=1"], "train.max_epoch=2 (this run: 1); a resumed run can be "),
        (last, [], "is the end of a finished run of 2 epoch(s); nothing is left to train"),
    ]
    for ckpt, extra, message in cases:
        trainer = Trainer(_cfg(synth, tmp_path, *extra), resume=ckpt, run_dir=tmp_path / "x")
        with pytest.raises(ConfigError) as info:
            trainer._build()
        assert message in info.value.message, info.value.message
