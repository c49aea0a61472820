"""Tabular imputation with any table AO-ARM (numeric, categorical or mixed columns),
multiple imputation with per-cell intervals, and ACE's NRMSE score, on tensors in model
units (files: `anyorder.data.table_io`; DataFrames: `anyorder.AnyOrderImputer`).

The missing cells of a row are the unobserved variables of one inpainting query: the
model fills them given the observed cells of that row, in protocol order. Observed cells
are copied through bit for bit. A row with no observed cell is an unconditional query:
its cells are drawn from the model's joint (or, for "conditional-mean", set to the means
of its marginals), as scikit-learn's imputers fill such rows too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from . import memory
from .data.base import DataError
from .errors import UserError, check_count
from .heads import count_levels

REDUCTIONS = ("mean", "sample", "conditional-mean")
INTERVAL_DRAWS = 100      # draws per row for intervals when none are named: 5 on each side of a 90% interval


def _check_table(table: torch.Tensor, name: str = "table") -> torch.Tensor:
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or not table.is_floating_point():
        what = f"{table.dtype} {tuple(table.shape)}" if isinstance(table, torch.Tensor) else type(table).__name__
        raise UserError(f"{name} must be a float tensor [N, D] with NaN for missing cells, got {what}")
    if torch.isinf(table).any():
        row, col = torch.isinf(table).nonzero()[0].tolist()
        raise DataError(f"{name} has an infinite value at row {row}, column {col}")
    return table


@torch.no_grad()
def impute(model, table: torch.Tensor, /, num_samples: int = 1, reduce: str = "mean",
           temperature: float = 1.0, generator: torch.Generator | None = None,
           batch_size: int = 4096, progress: bool = False, floor: torch.Tensor | None = None,
           **query) -> torch.Tensor:
    """Fill the NaN cells of `table` `[N, D]` (model units; level ids in categorical
    columns), leaving observed cells untouched.

    reduce:
      mean              `[N, D]`: `num_samples` joint draws of the missing cells from
                        `model.sample`, reduced per cell by `Head.reduce_draws`: their average
                        (the MSE-optimal fill as draws grow), the most frequent level in a
                        categorical column.
      sample            `[num_samples, N, D]`: the draws themselves (multiple imputation).
      conditional-mean  `[N, D]`: each missing cell set to the head's point estimate of
                        p(x_j | observed cells) in one pass, ACE's imputation:
                        `model.conditional_mean` (the mean; the mode of a categorical
                        column; ACE: the importance-weighted energy mean).
    `query` are the model's query options (ACE: model="energy" | "proposal", num_importance=…);
    progress: a bar over batches of rows. floor `[D]` (model units, -inf where unbounded):
    each draw, and the one-pass fill, is raised to it, so a column that cannot go below a
    bound (e.g. a count, `tables.floors`) is never filled below it: the mean of clipped
    draws is the mean of the clipped conditional, never below the floor either.
    """
    table = _check_table(table)
    if reduce not in REDUCTIONS:
        raise UserError(f"unknown reduce {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    num_samples, batch_size = check_count(num_samples, "num_samples"), check_count(batch_size, "batch_size")
    floor = _check_floor(floor, table)
    missing = torch.isnan(table)
    device = model.device
    draws = 1 if reduce == "conditional-mean" else num_samples
    # Every draw of every cell is kept until reduced, twice (the batches, then their concatenation).
    memory.check_fits(2 * 4 * draws * table.numel(), f"num_samples {num_samples} for {len(table)} rows")
    x = torch.where(missing, 0.0, table).to(device)
    observed = ~missing.to(device)
    rows, fills = max(1, batch_size // draws), []
    for start in tqdm(range(0, len(x), rows), desc="impute (batches)", disable=not progress, dynamic_ncols=True):
        xb = x[start:start + rows].repeat(draws, 1)
        ob = observed[start:start + rows].repeat(draws, 1)
        with model.query_options(**query):
            if reduce == "conditional-mean":
                out = model.conditional_mean(xb, ob, generator=generator)
            else:
                out = model.sample(xb, ob, temperature=temperature, generator=generator)
        fills.append(out.view(draws, -1, x.shape[1]))
    filled = torch.cat(fills, dim=1).to(table.device, table.dtype)
    if floor is not None:
        filled = torch.maximum(filled, floor)
    if reduce == "mean":
        filled = model.head.reduce_draws(filled)
    elif reduce == "conditional-mean":
        filled = filled[0]
    return torch.where(missing, filled, table)


def _check_floor(floor: torch.Tensor | None, table: torch.Tensor) -> torch.Tensor | None:
    """floor as a `[D]` tensor of the table's dtype and device (None: no bound)."""
    if floor is None:
        return None
    floor = torch.as_tensor(floor, dtype=table.dtype, device=table.device)
    if floor.shape != table.shape[-1:] or torch.isnan(floor).any():
        raise UserError(f"floor must be {table.shape[-1]} numbers (-inf where unbounded), one per column, "
                        f"got shape {tuple(floor.shape)}")
    return floor


@dataclass
class Intervals:
    """Multiple imputation of a table `[N, D]` (model units) from M draws, per cell.

    fill `[N, D]`: the table with holes filled by `impute(reduce="mean")` of these draws;
    draws `[M, N, D]`; quantiles `[Q, N, D]`: the draws' quantiles (interpolated at the places q·(M+1)−1) at
    each of `quantile_levels`, in numeric holes (NaN elsewhere); probabilities `[N, D, max K]`:
    the share of draws at each level in categorical holes (zero elsewhere).
    """

    quantile_levels: tuple[float, ...]
    fill: torch.Tensor
    draws: torch.Tensor
    quantiles: torch.Tensor
    probabilities: torch.Tensor


def check_quantiles(quantiles, num_samples: int | None) -> tuple[float, ...]:
    """The quantile levels as floats, each in (0, 1), with enough draws to place them: a level
    q needs num_samples · min(q, 1 − q) >= 1 (a draw on each side), e.g. 20 draws for 0.05
    (num_samples None: the levels alone are checked)."""
    try:
        levels = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise UserError(f"quantiles must be numbers in (0, 1), got {quantiles!r}") from None
    if not levels or not all(0 < q < 1 for q in levels):
        raise UserError(f"quantiles must be numbers strictly between 0 and 1, got {list(levels)}")
    if num_samples is not None:
        check_count(num_samples, "num_samples")
    tail = min(min(q, 1 - q) for q in levels)
    needed = math.ceil(1 / tail - 1e-9)
    if num_samples is not None and num_samples < needed:
        raise UserError(f"{num_samples} draws (num_samples, --num-samples) are too few for the quantile "
                        f"{min(levels, key=lambda q: min(q, 1 - q)):g}: need at least {needed}")
    return levels


@torch.no_grad()
def impute_intervals(model, table: torch.Tensor, /, quantiles=(0.05, 0.95), num_samples: int = INTERVAL_DRAWS,
                     temperature: float = 1.0, generator: torch.Generator | None = None,
                     batch_size: int = 4096, progress: bool = False, floor: torch.Tensor | None = None,
                     **query) -> Intervals:
    """Multiple imputation of the NaN cells of `table` `[N, D]` (model units): `num_samples`
    joint draws per row (`impute(reduce="sample")`, the same draws for every cell of a row),
    and per hole the draws' `quantiles` (numeric columns) or the share of draws at each level
    (categorical columns); see `Intervals`. Quantiles are in model units: `unstandardise`
    maps them to the file's (a monotone map, so they stay quantiles). floor: see `impute`;
    the quantiles of clipped draws are the clipped quantiles."""
    levels = check_quantiles(quantiles, num_samples)
    draws = impute(model, table, num_samples=num_samples, reduce="sample", temperature=temperature,
                   generator=generator, batch_size=batch_size, progress=progress, floor=floor, **query)
    missing = torch.isnan(table)
    counts = model.head.level_counts(table.shape[1])
    discrete = torch.tensor([k is not None for k in counts], device=table.device)
    q = torch.where(missing & ~discrete, draw_quantiles(draws, levels), math.nan)
    columns = [j for j, k in enumerate(counts) if k is not None]
    shares = torch.zeros(*table.shape, max(k or 1 for k in counts), dtype=table.dtype, device=table.device)
    if columns:
        shares[:, columns] = count_levels(draws[..., columns], shares.shape[-1]).to(table.dtype) / num_samples
    shares = torch.where((missing & discrete).unsqueeze(-1), shares, 0.0)
    fill = torch.where(missing, model.head.reduce_draws(draws), table)
    return Intervals(levels, fill, draws, q, shares)


def draw_quantiles(draws: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
    """Quantiles over the first dimension `[M, ...]` -> `[Q, ...]`, interpolating linearly
    between order statistics at the 0-based place q·(M+1)−1 (numpy's method "weibull"; the
    default place q·(M−1) would be wrong here). A fresh value falls below the k-th smallest
    of M exchangeable draws with probability k/(M+1), so these places give a calibrated model
    the nominal coverage at any M, where q·(M−1) covers only 0.9·(M−1)/(M+1) of a 90%
    interval (88.2% at M = 100). torch.quantile refuses large tensors, hence by hand."""
    ordered = draws.sort(0).values
    place = (torch.tensor(levels, dtype=torch.float64) * (len(draws) + 1) - 1).clamp(0, len(draws) - 1)
    low, frac = place.floor().long(), (place - place.floor()).to(draws.dtype)
    high = (low + 1).clamp(max=len(draws) - 1)
    shape = (-1,) + (1,) * (draws.dim() - 1)
    return ordered[low] + frac.view(shape).to(draws.device) * (ordered[high] - ordered[low])


def nrmse(truth: torch.Tensor, filled: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """ACE's normalised RMSE: per column, the RMSE over its hidden cells divided by the
    column's standard deviation over all rows of `truth` (population std), averaged over
    the columns that have hidden cells. `[N, D]` ×3 (hidden: bool) -> scalar."""
    truth, filled = _check_table(truth, "truth"), _check_table(filled, "filled")
    if truth.shape != filled.shape or hidden.shape != truth.shape or hidden.dtype != torch.bool:
        raise UserError(f"truth, filled and hidden (bool) must share one shape [N, D], got "
                         f"{tuple(truth.shape)}, {tuple(filled.shape)}, {hidden.dtype} {tuple(hidden.shape)}")
    if torch.isnan(truth).any() or torch.isnan(filled[hidden]).any():
        raise UserError("truth must be complete and filled must have a value in every hidden cell")
    counts = hidden.sum(0)
    if not counts.any():
        raise UserError("hidden has no True cell: there is nothing to score")
    error = torch.where(hidden, filled.double() - truth.double(), 0.0)
    rmse = (error.square().sum(0) / counts.clamp(min=1)).sqrt()
    scores = rmse / truth.double().std(0, unbiased=False)
    return scores[counts > 0].mean()
