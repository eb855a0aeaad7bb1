"""The anytime-valid p-value the leak detectors look at as data arrives."""

from __future__ import annotations

import numpy as np
import pytest

from detectors._exact import binomial_sf
from detectors.leaks._anytime import AnytimePValue


def test_anytime_p_value_charges_each_look_and_spaces_them_geometrically() -> None:
    looks = AnytimePValue(first_look=20)
    assert not looks.due(19)
    assert looks.due(20)
    looks.record(20, 0.01)
    assert looks.p_value == pytest.approx(0.02)
    assert (looks.next_look, looks.due(21)) == (22, False)
    looks.record(22, 0.001)
    assert looks.p_value == pytest.approx(0.006)
    looks.record(100, 0.5)
    # A later, weaker test does not undo an earlier, stronger one.
    assert looks.p_value == pytest.approx(0.006)
    assert looks.next_look == 110


def test_anytime_p_value_keeps_its_level_under_the_null() -> None:
    # Sign tests on fair coins, looked at as often as allowed for 2,000 flips: the
    # fraction of streams that ever reach alpha stays below alpha.
    rng = np.random.default_rng(0)
    alpha, streams, ever = 0.05, 400, 0
    for _ in range(streams):
        heads = np.cumsum(rng.random(2_000) < 0.5)
        looks = AnytimePValue(first_look=10)
        for size in range(1, 2_001):
            if looks.due(size):
                looks.record(size, binomial_sf(int(heads[size - 1]), size, 0.5))
        ever += looks.p_value <= alpha
    assert ever / streams <= alpha
