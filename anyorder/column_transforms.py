"""A monotone map of a skewed numeric column onto normal scores, and back: the imputer's
`transform="quantile"` option.

The map is the column's empirical distribution function (piecewise linear between its
quantiles at `KNOTS` evenly spaced levels) followed by the standard normal quantile
function; its inverse maps any real number back into the column's observed range. A
mixture-of-Gaussians head then models near-normal conditionals instead of long tails.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

KNOTS = 1000
EDGE = 1e-4        # levels kept inside (EDGE, 1 - EDGE): the normal scores stay within ±3.7


class QuantileNormal:
    """Per column: `knots` (the column's values at `levels`, increasing) and `levels`."""

    def __init__(self, knots: np.ndarray, levels: np.ndarray):
        self.knots, self.levels = np.asarray(knots, dtype=np.float64), np.asarray(levels, dtype=np.float64)

    @classmethod
    def fit(cls, values: np.ndarray) -> "QuantileNormal":
        """From a column's observed values (NaN ignored). Tied knots (a value repeated over
        several levels) become one knot at the middle of its levels, so the map is a
        function and ties land on one score."""
        observed = values[~np.isnan(values)]
        levels = np.linspace(EDGE, 1 - EDGE, min(KNOTS, max(2, len(observed))))
        knots = np.quantile(observed, levels)
        unique, where = np.unique(knots, return_inverse=True)
        middle = np.bincount(where, levels) / np.bincount(where)
        if len(unique) == 1:       # a constant column: any score maps back to its value
            unique, middle = np.array([unique[0], unique[0] + 1.0]), np.array([0.5 - EDGE, 0.5 + EDGE])
        return cls(unique, middle)

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Values -> normal scores (NaN stays NaN)."""
        return ndtri(np.interp(values, self.knots, self.levels))

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        """Normal scores -> values in the observed range."""
        return np.interp(ndtr(scores), self.levels, self.knots)

    def to_json(self) -> dict:
        return {"knots": self.knots.tolist(), "levels": self.levels.tolist()}

    @classmethod
    def from_json(cls, raw: dict) -> "QuantileNormal":
        return cls(raw["knots"], raw["levels"])
