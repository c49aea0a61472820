"""Draws from one categorical distribution over any number of categories.

`torch.multinomial` refuses more than 2^24 categories and works on float32 weights, where
a table of D² cells (training nodes are drawn as (|o|, k) pairs from a D×D table: 25 M
cells for a table of 5000 columns) has cells of ~1e-8 next to cells of ~1e-3. This draws
by the inverse of the cumulative distribution in float64: u ~ U[0, total), the category
is the first whose cumulative weight exceeds u. Every category is drawn with probability
its weight over the total, to float64 rounding of the running sums (relative error about
K·2^-53), at any K; a zero weight is never drawn.
"""

from __future__ import annotations

import torch

from .errors import UserError


def cumulative(weights: torch.Tensor) -> torch.Tensor:
    """The running sums (float64 `[K]`) of `weights` `[K]` (non-negative, finite, not all
    zero; normalised or not), which `draw` samples from. Compute once, draw many times."""
    weights = weights.reshape(-1)
    if len(weights) == 0 or not torch.isfinite(weights).all() or (weights < 0).any() or not (weights > 0).any():
        raise UserError("categorical weights must be finite, >= 0 and not all zero")
    return weights.double().cumsum(0)


def draw(cdf: torch.Tensor, num: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """`num` independent draws (int64 `[num]`, on `device`) from the categories whose
    running sums of weights are `cdf` (`cumulative`)."""
    u = torch.rand(num, dtype=torch.float64, generator=generator, device=device)
    cdf = cdf.to(u.device)
    last = torch.searchsorted(cdf, cdf[-1:])                 # the last category with a weight
    return torch.minimum(torch.searchsorted(cdf, u * cdf[-1], right=True), last)


def categorical(weights: torch.Tensor, num: int, generator: torch.Generator | None = None,
                device=None) -> torch.Tensor:
    """`num` independent draws (int64 `[num]`, on `device`) from the categories of
    `weights` `[K]` (see `cumulative`)."""
    return draw(cumulative(weights), num, generator, device)
