"""The callback kind without training: contract checks, config checks, the flag, dispatching."""

from __future__ import annotations

import sys

import pytest

from yoloqat.core import events
from yoloqat.core.config import check_config, load_config
from yoloqat.core.contracts import check_component
from yoloqat.core.errors import ConfigError, PluginError
from yoloqat.engine.training.callbacks import Callbacks, build_callbacks
from yoloqat.registry import Registry


def test_bundled_callbacks_are_listed_and_built() -> None:
    reg = Registry(entry_points=False)
    names = {c.name: c.plugin for c in reg.components("callback")}
    assert names == {
        "log": "writers",
        "metrics": "writers",
        "curves": "writers",
        "tensorboard": "tensorboard",
    }
    built = build_callbacks(load_config("synth_tiny"), reg)
    assert built.names == ["log", "metrics", "curves"]


def test_a_callback_needs_one_event_method_of_the_right_form() -> None:
    class Nothing:
        pass

    class WrongArity:
        def on_step(self):
            return None

    with pytest.raises(PluginError, match="none of the event methods"):
        check_component("callback", Nothing(), plugin="acme", name="nothing")
    with pytest.raises(PluginError, match=r"'on_step' does not take 1 positional"):
        check_component("callback", WrongArity(), plugin="acme", name="wrong")

    class OnlyEnd:
        def on_run_end(self, end):
            return None

    check_component("callback", OnlyEnd(), plugin="acme", name="only_end")  # the rest optional


def test_callback_names_and_parameters_are_checked_with_the_config() -> None:
    reg = Registry(entry_points=False)
    cfg = load_config("synth_tiny")
    cfg["train"]["callbacks"] = ["log", "tensorbord"]
    with pytest.raises(ConfigError, match=r"train\.callbacks\[1\]: .*Did you mean 'tensorboard'"):
        check_config(cfg, reg)
    cfg["train"]["callbacks"] = [{"name": "tensorboard", "flush_sec": 5}]
    with pytest.raises(ConfigError, match="Did you mean 'flush_secs'"):
        check_config(cfg, reg)
    cfg["train"]["callbacks"] = ["log", "log"]
    with pytest.raises(ConfigError, match="names log more than once"):
        check_config(cfg, reg)
    cfg["train"]["callbacks"] = [{"name": "tensorboard", "flush_secs": 5}]
    check_config(cfg, reg)


def test_the_callbacks_flag_adds_to_the_configured_list() -> None:
    from yoloqat.cli.train import add_callbacks

    cfg = load_config("synth_tiny")
    assert add_callbacks(cfg, "tensorboard,log")["train"]["callbacks"] == [
        "log",
        "metrics",
        "curves",
        "tensorboard",
    ]
    assert add_callbacks({}, "tensorboard")["train"]["callbacks"][-1] == "tensorboard"


def test_tensorboard_without_tensorboardx_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # what an absent package gives
    reg = Registry(entry_points=False)
    with pytest.raises(PluginError, match="needs the tensorboardX package") as err:
        reg.create("callback", "tensorboard")
    assert "pip install 'yoloqat[tensorboard]'" in (err.value.hint or "")


def test_a_raising_callback_is_disabled_after_one_warning() -> None:
    calls = []

    class Flaky:
        def on_step(self, step):
            calls.append(step)
            raise ValueError("bad value")

    class Steady:
        def on_step(self, step):
            calls.append(("steady", step))

    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    try:
        callbacks = Callbacks([("flaky", "acme", Flaky()), ("steady", "acme", Steady())])
        for step in range(3):
            callbacks.emit("on_step", step)
            callbacks.emit("on_epoch_end", step)  # neither has it: nothing happens
    finally:
        unsubscribe()
    assert calls == [0, ("steady", 0), ("steady", 1), ("steady", 2)]
    warnings = [e.data for e in seen if e.kind == "warning"]
    assert len(warnings) == 1 and callbacks.names == ["steady"]
    assert warnings[0]["message"].startswith(
        "callback 'flaky' (plugin 'acme') raised ValueError in on_step: bad value"
    )


def test_the_bundled_callbacks_pass_the_conformance_kit(tmp_path) -> None:
    from yoloqat.testing import check_callback

    reg = Registry(entry_points=False)
    for name in ("log", "metrics", "curves", "tensorboard"):
        check_callback(reg.get("callback", name).factory, run_dir=tmp_path)
    log = (tmp_path / "log.txt").read_text()
    assert "epoch[1], iter[1], loss:9.500000, 8.00 imgs/sec, lr:0.01" in log  # 2-step mean
    assert "iter[0]" not in log
    assert "epoch[1], val AP:0.500000, AP50:0.500000, best AP50:0.500000 (new best)" in log
    kinds = [line.split('"kind": "')[1].split('"')[0] for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert kinds == ["step", "step", "epoch", "val"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1

    class Broken:
        def on_validation(self, result):
            raise KeyError("AP")

    def broken() -> Broken:
        """Fails on validation."""
        return Broken()

    with pytest.raises(AssertionError, match="broken: on_validation raised KeyError"):
        check_callback(broken)


def test_validation_flags_set_the_train_keys_and_are_checked() -> None:
    from yoloqat.cli.train import apply_flags

    reg = Registry(entry_points=False)
    flags = {"val_interval": 2, "best_metric": "AP", "val_max_images": 50}
    cfg = apply_flags(load_config("synth_tiny"), flags, reg)
    assert {k: cfg["train"][k] for k in flags} == flags
    check_config(cfg, reg)
    cfg["train"]["best_metric"] = "AP5"
    with pytest.raises(ConfigError, match=r"train\.best_metric='AP5' is not valid"):
        check_config(cfg, reg)
    cfg["train"]["best_metric"], cfg["train"]["val_interval"] = "AP50", -1
    with pytest.raises(ConfigError, match=r"train\.val_interval=-1 is not valid"):
        check_config(cfg, reg)
