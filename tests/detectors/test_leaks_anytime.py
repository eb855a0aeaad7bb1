"""The anytime-valid p-values the leak detectors look at as data arrives."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from detectors._exact import binomial_sf
from detectors.leaks._anytime import AnytimePValues


def test_anytime_p_value_charges_each_look_and_spaces_them_geometrically() -> None:
    looks = AnytimePValues(first_look=20)
    test = looks.add()
    assert not looks.due(test, 19)
    assert looks.due(test, 20)
    looks.record(test, 20, 0.01)
    assert looks.p(test) == pytest.approx(0.02)
    assert (int(looks.next_look[test]), looks.due(test, 21)) == (22, False)
    looks.record(test, 22, 0.001)
    assert looks.p(test) == pytest.approx(0.006)
    looks.record(test, 100, 0.5)
    # A later, weaker test does not undo an earlier, stronger one.
    assert looks.p(test) == pytest.approx(0.006)
    assert int(looks.next_look[test]) == 110


def test_anytime_p_value_keeps_its_level_under_the_null() -> None:
    # Sign tests on fair coins, looked at as often as allowed for 2,000 flips: the
    # fraction of streams that ever reach alpha stays below alpha.
    rng = np.random.default_rng(0)
    alpha, streams, ever = 0.05, 400, 0
    for _ in range(streams):
        heads = np.cumsum(rng.random(2_000) < 0.5)
        looks = AnytimePValues(first_look=10)
        test = looks.add()
        for size in range(1, 2_001):
            if looks.due(test, size):
                looks.record(test, size, binomial_sf(int(heads[size - 1]), size, 0.5))
        ever += looks.p(test) <= alpha
    assert ever / streams <= alpha


def test_tests_are_charged_apart_and_a_copy_is_independent() -> None:
    looks = AnytimePValues(first_look=5)
    first, second = looks.add(), looks.add()
    looks.record(second, 5, 0.001)
    before = looks.copy()
    looks.record(second, 6, 0.0001)
    assert (looks.p(first), int(looks.next_look[first])) == (1.0, 5)
    assert looks.p(second) == pytest.approx(0.0006)
    assert before.p(second) == pytest.approx(0.002)
    assert (len(looks), int(before.looks[second])) == (2, 1)


def test_many_tests_hold_no_object_the_garbage_collector_walks() -> None:
    looks = AnytimePValues(first_look=5)
    for _ in range(20):
        looks.record(looks.add(), 5, 0.5)
    restored = pickle.loads(pickle.dumps(looks))
    assert not gc.is_tracked(vars(restored))
    assert restored.p(19) == looks.p(19) == 1.0
