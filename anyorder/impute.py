"""Tabular imputation with any continuous AO-ARM, and ACE's NRMSE score.

The missing cells of a row are the unobserved variables of one inpainting query: the
model fills them given the observed cells of that row, in protocol order. Observed cells
are copied through bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from .data.base import DataError
from .data.tables import format_cell, read_cells, standardise, unstandardise, write_cells
from .errors import UserError
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
           batch_size: int = 4096, **query) -> torch.Tensor:
    """Fill the NaN cells of `table` `[N, D]` (model units), leaving observed cells untouched.

    reduce:
      mean              `[N, D]`: the average of `num_samples` joint draws of the missing
                        cells from `model.sample` (the MSE-optimal fill as draws grow).
      sample            `[num_samples, N, D]`: the draws themselves (multiple imputation).
      conditional-mean  `[N, D]`: each missing cell set to E[x_j | observed cells] in one
                        pass, ACE's imputation: `model.conditional_mean` (the head's mean;
                        ACE: the importance-weighted energy mean).
    `query` are the model's query options (ACE: model="energy" | "proposal", num_importance=…).
    Rows with no observed cell raise DataError.
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
    x = torch.where(missing, 0.0, table).to(device)
    observed = ~missing.to(device)
    draws = 1 if reduce == "conditional-mean" else num_samples
    rows, fills = max(1, batch_size // draws), []
    for start in range(0, len(x), rows):
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
        filled = filled.mean(0)
    elif reduce == "conditional-mean":
        filled = filled[0]
    return torch.where(missing, filled, table)


def impute_file(model, meta: dict, input, output, num_samples: int = 10, reduce: str = "mean",
                seed: int = 0, **query) -> np.ndarray:
    """Fill the missing cells of a CSV/TSV file with a model trained on a table described by
    `meta` (columns, mean, std) and write the result; observed cells are written back as the
    very text they had; `output` must differ from `input` and be writable (checked before
    any work). reduce="sample" with num_samples > 1 writes the draws one after
    another under an extra first column "draw". Returns the values written (float64)."""
    output = output_file(output, "output", inputs=(input,))
    columns, cells, raw = read_cells(input)
    expected = meta.get("columns") or columns
    if raw.shape[1] != len(expected):
        raise DataError(f"{input}: {raw.shape[1]} columns, but the model was trained on "
                        f"{len(expected)} ({', '.join(expected)})")
    generated = all(c == f"col{j + 1}" for j, c in enumerate(columns))
    if not generated and columns != expected:
        raise DataError(f"{input}: columns {columns} differ from the model's {expected} "
                        "(same names in the same order, or no header row)")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.from_numpy(standardise(raw, meta)).float()
    filled = impute(model, x, num_samples=num_samples, reduce=reduce, generator=generator, **query)
    values = np.where(np.isnan(raw), unstandardise(filled.double(), meta).numpy(), raw)
    draws = values if values.ndim == 3 else values[None]
    missing = np.isnan(raw)
    rows = [[format_cell(v) if hole else text for v, hole, text in zip(row, holes, texts)]
            for draw in draws for row, holes, texts in zip(draw.tolist(), missing, cells)]
    if len(draws) > 1:
        rows = [[str(i // len(raw))] + row for i, row in enumerate(rows)]
        expected = ["draw"] + list(expected)
        values = np.hstack([np.repeat(np.arange(len(draws)), len(raw))[:, None], draws.reshape(-1, raw.shape[1])])
    else:
        values = draws[0]
    write_cells(output, expected, rows)
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
