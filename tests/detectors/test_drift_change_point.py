"""A change inside a reference sample: Pettitt's point, and the cut a reference keeps."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.drift._change_point import change_point, reference_cut

FLOOR = 0.15  # the watch's default for features (streams.monitor.watch.DEFAULT_MIN_EFFECT)


def stationary(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0.0, 1.0, n)
    if kind == "skewed":
        return rng.lognormal(1.0, 0.8, n)
    if kind == "counts":
        return rng.poisson(3.0, n).astype(float)
    return np.where(rng.random(n) < 0.6, 0.0, rng.beta(2.0, 5.0, n))  # zero-inflated


def test_an_abrupt_change_is_cut_where_it_began() -> None:
    rng = np.random.default_rng(13)
    values = np.concatenate([rng.lognormal(0.0, 1.0, 267), rng.lognormal(3.0, 1.0, 333)])
    assert reference_cut(values, FLOOR) == 267


def test_a_gradual_change_is_cut_inside_its_ramp() -> None:
    # The mean ramps by two standard deviations over values 106 to 318, as the short
    # scenario's ltv-003 in a trial: the part kept holds the 106 values before the ramp
    # and its first three quarters (moved by up to 1.5 standard deviations), not the
    # values moved by two.
    rng = np.random.default_rng(13)
    ramp = np.clip((np.arange(600) - 106) / 212, 0.0, 1.0)
    values = rng.normal(2.0 * ramp, 1.0)
    assert reference_cut(values, FLOOR) == 263


def test_a_change_near_either_end_leaves_each_side_a_hundred_values() -> None:
    rng = np.random.default_rng(2)
    early = np.concatenate([rng.normal(0.0, 1.0, 30), rng.normal(3.0, 1.0, 570)])
    assert change_point(early)[0] == 102
    assert change_point(rng.normal(0.0, 1.0, 199)) == (0, 1.0)


@pytest.mark.parametrize("kind", ["normal", "skewed", "counts", "zero_inflated"])
def test_a_stationary_reference_is_kept_whole(kind: str) -> None:
    cuts = [
        reference_cut(stationary(kind, np.random.default_rng(seed), 600), FLOOR)
        for seed in range(200)
    ]
    assert cuts == [600] * 200


def test_a_significant_change_below_the_floor_is_kept_whole() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(0.3, 1.0, 300)])
    assert change_point(values)[1] < 0.001
    assert reference_cut(values, FLOOR) == 600
    assert reference_cut(values, 0.0) == 299
