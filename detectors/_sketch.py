"""Log-spaced buckets, as in DDSketch: quantiles within a relative accuracy in bounded memory.

Bucket ``key`` holds the values in ``(gamma ** (key - 1), gamma ** key]``, with
``gamma = (1 + a) / (1 - a)`` for a relative accuracy ``a``. A sketch is a mapping of keys
to counts; where values near zero go is the caller's choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def log_gamma(relative_accuracy: float) -> float:
    """``log(gamma)`` for a relative accuracy in (0, 1)."""
    return math.log((1 + relative_accuracy) / (1 - relative_accuracy))


def bucket_key(value: float, log_gamma: float) -> int:
    """The key of the bucket holding ``value`` > 0."""
    return math.ceil(math.log(value) / log_gamma)


def quantile_key(buckets: Mapping[int, int], q: float) -> int:
    """The key of the bucket holding the ``q`` quantile (rank ``q * (n - 1)``) of a sketch.

    Examples
    --------
    >>> quantile_key({0: 2, 3: 7, 7: 1}, 0.5), quantile_key({0: 2, 3: 7, 7: 1}, 1.0)
    (3, 7)
    """
    rank = q * (sum(buckets.values()) - 1)
    seen = 0
    for key in sorted(buckets):
        seen += buckets[key]
        if seen > rank:
            return key
    raise ValueError("no quantile of an empty sketch")


def bucket_value(key: int, log_gamma: float) -> float:
    """The point of bucket ``key`` whose relative error to both its ends is the accuracy.

    Examples
    --------
    >>> lg = log_gamma(0.01)
    >>> value = bucket_value(bucket_key(1234.5, lg), lg)
    >>> abs(value - 1234.5) / 1234.5 <= 0.01
    True
    """
    return 2.0 * math.exp(key * log_gamma) / (math.exp(log_gamma) + 1.0)
