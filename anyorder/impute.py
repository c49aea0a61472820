"""Tabular imputation with any table AO-ARM (numeric, categorical or mixed columns),
multiple imputation with per-cell intervals, and ACE's NRMSE score.

The missing cells of a row are the unobserved variables of one inpainting query: the
model fills them given the observed cells of that row, in protocol order. Observed cells
are copied through bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import memory
from .data.base import DataError
from .data.tables import (decode_cells, encode_cells, format_cell, read_rows, standardise, unstandardise,
                          write_cells)
from .errors import UserError
from .files import remove_stale
from .heads import count_levels
from .paths import output_file

REDUCTIONS = ("mean", "sample", "conditional-mean")


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
           batch_size: int = 4096, progress: bool = False, **query) -> torch.Tensor:
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
    progress: a bar over batches of rows. Rows with no observed cell raise DataError.
    """
    table = _check_table(table)
    if reduce not in REDUCTIONS:
        raise UserError(f"unknown reduce {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    if num_samples < 1 or batch_size < 1:
        raise UserError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    missing = torch.isnan(table)
    empty = missing.all(-1)
    if empty.any():
        raise DataError(f"row {int(empty.nonzero()[0])} of the table is entirely missing; "
                        f"there is nothing to condition on ({int(empty.sum())} such rows)")
    device = next(model.parameters()).device
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
    if reduce == "mean":
        filled = model.head.reduce_draws(filled)
    elif reduce == "conditional-mean":
        filled = filled[0]
    return torch.where(missing, filled, table)


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
    tail = min(min(q, 1 - q) for q in levels)
    needed = math.ceil(1 / tail - 1e-9)
    if num_samples is not None and num_samples < needed:
        raise UserError(f"{num_samples} draws (num_samples, --num-samples) are too few for the quantile "
                        f"{min(levels, key=lambda q: min(q, 1 - q)):g}: need at least {needed}")
    return levels


@torch.no_grad()
def impute_intervals(model, table: torch.Tensor, /, quantiles=(0.05, 0.95), num_samples: int = 100,
                     temperature: float = 1.0, generator: torch.Generator | None = None,
                     batch_size: int = 4096, progress: bool = False, **query) -> Intervals:
    """Multiple imputation of the NaN cells of `table` `[N, D]` (model units): `num_samples`
    joint draws per row (`impute(reduce="sample")`, the same draws for every cell of a row),
    and per hole the draws' `quantiles` (numeric columns) or the share of draws at each level
    (categorical columns); see `Intervals`. Quantiles are in model units: `unstandardise`
    maps them to the file's (a monotone map, so they stay quantiles)."""
    levels = check_quantiles(quantiles, num_samples)
    draws = impute(model, table, num_samples=num_samples, reduce="sample", temperature=temperature,
                   generator=generator, batch_size=batch_size, progress=progress, **query)
    missing = torch.isnan(table)
    counts = model.head.level_counts(table.shape[1])
    discrete = torch.tensor([k is not None for k in counts], device=table.device)
    q = torch.where(missing & ~discrete, _quantiles(draws, levels), math.nan)
    columns = [j for j, k in enumerate(counts) if k is not None]
    shares = torch.zeros(*table.shape, max(k or 1 for k in counts), dtype=table.dtype, device=table.device)
    if columns:
        shares[:, columns] = count_levels(draws[..., columns], shares.shape[-1]).to(table.dtype) / num_samples
    shares = torch.where((missing & discrete).unsqueeze(-1), shares, 0.0)
    fill = torch.where(missing, model.head.reduce_draws(draws), table)
    return Intervals(levels, fill, draws, q, shares)


def _quantiles(draws: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
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


def intervals_path(output) -> Path:
    """Where `impute_file` writes per-cell intervals: beside `output`, ".intervals" before
    its extension (filled.csv -> filled.intervals.csv, filled.tsv.gz -> filled.intervals.tsv.gz)."""
    output = Path(output).expanduser()
    name = output.name
    gz = ".gz" if name.endswith(".gz") else ""
    plain = name[:-3] if gz else name
    stem, dot, extension = plain.rpartition(".")
    if not dot or not stem:
        stem, extension = plain, "csv"
    return output.with_name(f"{stem}.intervals.{extension}{gz}")


def _interval_rows(intervals: Intervals, meta: dict, missing: np.ndarray, columns: list[str]) -> list[list[str]]:
    """One row per hole: row, column, fill, a column per quantile, probability (of the fill),
    probabilities (JSON, level -> share, most likely first); see `impute_file`."""
    levels = meta.get("levels") or [None] * missing.shape[1]
    fill = unstandardise(intervals.fill.double(), meta).numpy()
    texts = decode_cells(fill, meta)
    quantiles = unstandardise(intervals.quantiles.double(), meta).numpy()
    shares = intervals.probabilities.double().numpy()
    out = []
    for i, j in zip(*np.nonzero(missing)):
        if levels[j] is None:
            row = [format_cell(float(v)) for v in quantiles[:, i, j]] + ["", ""]
        else:
            share = [round(float(p), 6) for p in shares[i, j, :len(levels[j])]]
            ranked = sorted((k for k, p in enumerate(share) if p > 0), key=lambda k: (-share[k], k))
            row = [""] * len(intervals.quantile_levels) + [format_cell(share[int(fill[i, j])]),
                                                  json.dumps({levels[j][k]: share[k] for k in ranked})]
        out.append([str(i), columns[j], texts[i][j], *row])
    return out


def impute_file(model, meta: dict, input, output, num_samples: int = 10, reduce: str = "mean",
                seed: int = 0, quantiles=None, progress: bool = False, **query) -> np.ndarray:
    """Fill the missing cells of a CSV/TSV file with a model trained on a table described by
    `meta` (columns, mean, std, levels, integer) and write the result; observed cells are
    written back as the very text they had, categorical fills as their level's text,
    integer columns' fills rounded; `output` must differ from `input` and be writable
    (checked before any work). reduce="sample" with num_samples > 1 writes the draws one
    after another under an extra first column "draw".

    quantiles (e.g. (0.05, 0.95)): also write `intervals_path(output)`, one row per hole
    from `impute_intervals` with `num_samples` draws: row (0 = the first data row), column,
    fill (as in the output), q<level> per quantile (numeric holes, file units),
    probability (the fill's share of the draws) and probabilities (JSON, level -> share)
    for categorical holes. With reduce="mean" the output's fills come from those same draws.

    Returns the values written (float64; level ids for categorical columns).
    """
    output = output_file(output, "output", inputs=(input,))
    side = output_file(intervals_path(output), "intervals output", inputs=(input,)) if quantiles is not None else None
    remove_stale(output.parent)         # .partial files of imputations that were killed
    if side is not None:
        quantiles = check_quantiles(quantiles, num_samples)
    columns, cells, lines = read_rows(input)
    expected = meta.get("columns") or columns
    if len(columns) != len(expected):
        raise DataError(f"{input}: {len(columns)} columns, but the model was trained on "
                        f"{len(expected)} ({', '.join(expected)})")
    generated = all(c == f"col{j + 1}" for j, c in enumerate(columns))
    if not generated and columns != expected:
        raise DataError(f"{input}: columns {columns} differ from the model's {expected} "
                        "(same names in the same order, or no header row)")
    raw = encode_cells(list(expected), cells, lines, meta.get("levels") or [None] * len(expected), input)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.from_numpy(standardise(raw, meta)).float()
    options = dict(generator=generator, progress=progress, **query)
    intervals = impute_intervals(model, x, quantiles, num_samples, **options) if side is not None else None
    if intervals is not None and reduce == "mean":
        filled = intervals.fill
    elif intervals is not None and reduce == "sample":
        filled = intervals.draws
    else:
        filled = impute(model, x, num_samples=num_samples, reduce=reduce, **options)
    values = np.where(np.isnan(raw), unstandardise(filled.double(), meta).numpy(), raw)
    integer = np.asarray(meta.get("integer") or [False] * raw.shape[1], dtype=bool)
    values[..., integer] = np.round(values[..., integer])
    draws = values if values.ndim == 3 else values[None]
    missing = np.isnan(raw)
    rows = [[fill if hole else text for fill, hole, text in zip(filled_row, holes, texts)]
            for draw in draws for filled_row, holes, texts in zip(decode_cells(draw, meta), missing, cells)]
    if len(draws) > 1:
        rows = [[str(i // len(raw))] + row for i, row in enumerate(rows)]
        header = ["draw"] + list(expected)
        values = np.hstack([np.repeat(np.arange(len(draws)), len(raw))[:, None], draws.reshape(-1, raw.shape[1])])
    else:
        header, values = list(expected), draws[0]
    write_cells(output, header, rows)
    if side is not None:
        names = ["row", "column", "fill", *(f"q{format_cell(q)}" for q in quantiles), "probability", "probabilities"]
        write_cells(side, names, _interval_rows(intervals, meta, missing, list(expected)))
    return values


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
