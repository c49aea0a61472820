"""Checked command-line values: argparse types that refuse out-of-range numbers at once,
with a message naming the option (argparse adds the option's name)."""

from __future__ import annotations

import argparse
import math


def count(low: int = 1, meaning: str = "", high: int | None = None):
    """An integer >= `low` (and <= `high` where given); `meaning` explains special values in
    the error (e.g. "0 = all")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}{f' ({meaning})' if meaning else ''}, "
                                             f"got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False):
    """A finite float in [low, high] (or (low, high] with `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (value > low if low_open else value >= low) and value <= high
        if not math.isfinite(value) or not inside:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


probability = number(0.0, 1.0)
seed = count(0, high=2 ** 63 - 1)     # what every generator takes
