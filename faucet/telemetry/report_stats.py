"""Exact figures from histograms: the report's queries group rows by their keys and
``elapsed`` (a whole number of milliseconds, so a window of a million rows has a few
thousand distinct values per group) and count; this module turns those counts into the
same numbers PostgreSQL's ``percentile_cont`` would give over the rows themselves, and
merges groups (endpoints whose paths normalise alike, every worker of a version...).

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile_cont(histogram: Mapping[int, int], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont(fraction)`` over a multiset given as
    ``{value: count}``: the value at position ``fraction * (n - 1)`` of the sorted values,
    interpolated linearly between its neighbours. None when empty."""
    return percentiles(histogram, (fraction,))[0]


def percentiles(histogram: Mapping[int, int], fractions: Sequence[float]) -> list[float | None]:
    """``percentile_cont`` for each fraction, in one walk over the sorted values."""
    total = sum(histogram.values())
    if not total:
        return [None] * len(fractions)
    wanted: dict[int, int | None] = {}
    for fraction in fractions:
        position = fraction * (total - 1)
        wanted[math.floor(position)] = wanted[math.ceil(position)] = None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        for index in [i for i, v in wanted.items() if v is None and i < seen]:
            wanted[index] = value
    results = []
    for fraction in fractions:
        position = fraction * (total - 1)
        low, high = wanted[math.floor(position)], wanted[math.ceil(position)]
        results.append(float(low + (high - low) * (position - math.floor(position))))
    return results


class Tally:
    """Counts of one group: requests, 5xx, time, and the ``elapsed`` histogram."""

    __slots__ = ("busy_ms", "errors_5xx", "histogram", "max_ms", "requests")

    def __init__(self) -> None:
        self.requests = self.errors_5xx = self.busy_ms = 0
        self.max_ms: int | None = None
        self.histogram: Counter[int] = Counter()

    def add(self, elapsed: int, count: int, errors_5xx: int = 0) -> None:
        self.requests += count
        self.errors_5xx += errors_5xx
        self.busy_ms += elapsed * count
        self.histogram[elapsed] += count
        if self.max_ms is None or elapsed > self.max_ms:
            self.max_ms = elapsed

    def percentiles(self, *fractions: float) -> list[float | None]:
        return percentiles(self.histogram, fractions)


def tally_by(rows: Iterable[Mapping[str, Any]], key, *, errors: str | None = None,
             keep=None) -> dict[Any, Tally]:
    """One ``Tally`` per ``key(row)`` over histogram rows (``elapsed``, ``n``, and the
    5xx count in column ``errors``, or 5xx by the row's ``status``); rows where ``keep``
    is false are skipped."""
    tallies: dict[Any, Tally] = {}
    for row in rows:
        if keep is not None and not keep(row):
            continue
        tally = tallies.get(k := key(row))
        if tally is None:
            tally = tallies[k] = Tally()
        failed = row[errors] if errors else (row["n"] if row["status"] >= 500 else 0)
        tally.add(row["elapsed"], row["n"], failed)
    return tallies
