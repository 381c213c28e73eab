"""LR schedules against the seed's formulas and its own training log (docs/seed.md §6.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yoloqat.core.errors import ConfigError
from yoloqat.plugins.schedulers import cosine_annealing, exponential, yoloqat_schedulers


def test_hook_lists_both() -> None:
    assert set(yoloqat_schedulers()) == {"cosine_annealing", "exponential"}


def test_cosine_matches_seed_log() -> None:
    """The seed's 8p log: lr 6.497e-06 at epoch 133 and 1.6246e-06 at epoch 134."""
    spe = 3
    sched = cosine_annealing(lr=0.012, T_max=135, warmup_epochs=5, warmup="zero")
    lr = sched.per_step(spe, 135)
    assert lr.dtype == np.float32
    assert lr.shape == (spe * 135,)
    assert sched.base_lr == pytest.approx(0.012)
    assert lr[133 * spe] == pytest.approx(6.497e-06, rel=1e-3)
    assert lr[134 * spe] == pytest.approx(1.6246e-06, rel=1e-3)
    # A per-epoch staircase: constant within an epoch.
    assert np.all(lr.reshape(135, spe) == lr.reshape(135, spe)[:, :1])


def test_cosine_formula_and_eta_min() -> None:
    lr = cosine_annealing(lr=0.1, T_max=10, eta_min=0.01).per_step(2, 10)
    epochs = np.arange(20) // 2
    expected = 0.01 + 0.09 * (1 + np.cos(math.pi * epochs / 10)) / 2
    np.testing.assert_allclose(lr, expected, rtol=1e-6)


def test_t_max_is_raised_to_max_epoch() -> None:
    short = cosine_annealing(lr=0.1, T_max=5).per_step(1, 10)
    full = cosine_annealing(lr=0.1, T_max=10).per_step(1, 10)
    np.testing.assert_array_equal(short, full)
    # Training shorter than T_max keeps T_max: the LR never reaches eta_min.
    partial = cosine_annealing(lr=0.1, T_max=20).per_step(1, 10)
    assert partial[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * 9 / 20)) / 2, rel=1e-6)


def test_zero_warmup_then_cosine_resumes_at_epoch_value() -> None:
    spe, warm = 4, 5
    plain = cosine_annealing(lr=0.012, T_max=135).per_step(spe, 135)
    lr = cosine_annealing(lr=0.012, T_max=135, warmup_epochs=warm, warmup="zero").per_step(spe, 135)
    assert np.all(lr[: warm * spe] == 0.0)
    np.testing.assert_array_equal(lr[warm * spe :], plain[warm * spe :])
    assert lr[warm * spe] < 0.012  # epoch-5 value, not the base LR
    assert lr[warm * spe] == pytest.approx(0.006 * (1 + math.cos(math.pi * 5 / 135)), rel=1e-6)


def test_linear_warmup_ramps() -> None:
    spe, warm = 3, 2
    lr = cosine_annealing(lr=0.1, T_max=10, warmup_epochs=warm).per_step(spe, 10)
    steps = warm * spe
    np.testing.assert_allclose(lr[:steps], 0.1 * np.arange(1, steps + 1) / steps, rtol=1e-6)
    assert np.all(np.diff(lr[:steps]) > 0)
    assert lr[steps] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 10)), rel=1e-6)


def test_fractional_warmup_epochs() -> None:
    lr = cosine_annealing(lr=0.1, T_max=4, warmup_epochs=0.5, warmup="zero").per_step(4, 4)
    assert np.all(lr[:2] == 0) and lr[2] == pytest.approx(0.1)


def test_exponential_milestones() -> None:
    spe = 2
    lr = exponential(lr=0.01, lr_epochs=(3, 5), lr_gamma=0.1).per_step(spe, 7)
    expected = np.repeat([0.01, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001], spe)
    np.testing.assert_allclose(lr, expected, rtol=1e-6)
    # The seed's command-line spelling "92,105" works too.
    seed = exponential(lr=0.01, lr_epochs="3,5").per_step(spe, 7)
    np.testing.assert_array_equal(seed, lr)


def test_exponential_with_linear_warmup() -> None:
    lr = exponential(lr=0.01, lr_epochs=[2], lr_gamma=0.5, warmup_epochs=1).per_step(4, 3)
    np.testing.assert_allclose(lr[:4], [0.0025, 0.005, 0.0075, 0.01], rtol=1e-6)
    np.testing.assert_allclose(lr[4:8], 0.01, rtol=1e-6)
    np.testing.assert_allclose(lr[8:], 0.005, rtol=1e-6)


@pytest.mark.parametrize(
    ("factory", "params"),
    [
        (cosine_annealing, {"lr": 0}),
        (cosine_annealing, {"lr": -0.1}),
        (cosine_annealing, {"T_max": 0}),
        (cosine_annealing, {"T_max": 1.5}),
        (cosine_annealing, {"eta_min": 1.0}),
        (cosine_annealing, {"warmup_epochs": -1}),
        (cosine_annealing, {"warmup": "cosine"}),
        (exponential, {"lr_epochs": (105, 92)}),
        (exponential, {"lr_epochs": "92,x"}),
        (exponential, {"lr_epochs": (0,)}),
        (exponential, {"lr_gamma": 0}),
        (exponential, {"warmup": "ramp"}),
    ],
)
def test_bad_parameters(factory, params) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        factory(**params)


def test_bad_step_counts() -> None:
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        cosine_annealing().per_step(0, 10)
    with pytest.raises(ConfigError, match="max_epoch"):
        exponential().per_step(10, 0)
