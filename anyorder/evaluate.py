"""Test-set likelihoods: the joint and card-uniform marginals the paper reports, and infilling.

Three queries per row: the joint log p(x); a marginal log p(x_e) with e card-uniform; and
infilling log p(x_u | x_o) with o a uniform half of the row (u the rest). Masks are drawn
once from fixed seeds, so every model evaluated with the same seed answers the same queries
(the 50% infilling of `benchmarks/path_network.py` is seed 0's). Every figure comes with
its standard error over rows.
"""

from __future__ import annotations

import contextlib
import math

import torch
from tqdm import tqdm

from . import lattice
from .errors import UserError, check_count, is_integer
from .model import AnyOrderModel, bits_per_dim


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    se = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return values.mean().item(), se


def marginal_masks(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """The card-uniform marginal queries `evaluate` asks with this seed: `[rows, dim]` bool."""
    return lattice.query_masks(rows, dim, "card-uniform", generator=torch.Generator().manual_seed(seed))


QUERIES = ("joint", "marginal", "infill")
DESCRIPTIONS = {"joint": "joint", "marginal": "marginal, card-uniform", "infill": "infilling, 50% observed"}


def infill_given(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """The observed halves of `evaluate`'s infilling queries with this seed: `[rows, dim]` bool,
    a uniform set of D // 2 per row (drawn with seed + 1, so seed 0 asks what
    `benchmarks/path_network.py` asks)."""
    return lattice.uniform_subsets(torch.full((rows,), dim // 2), dim, torch.Generator().manual_seed(seed + 1))


def row_log_likelihoods(model: AnyOrderModel, rows: torch.Tensor, /, estimator: str = "exact",
                        num_draws: int = 1, batch_size: int = 64, seed: int = 0, autocast=None,
                        progress: bool = True, **log_prob_options) -> dict[str, torch.Tensor]:
    """log p(x), log p(x_e) with e from `marginal_masks(seed)` and log p(x_u | x_o) with o from
    `infill_given(seed)`, per row of `rows [N, D]`: {"joint": [N], "marginal": [N], "infill": [N]}
    in nats, on the CPU (for paired comparisons of models). `log_prob_options` are the
    model's query options (ACE: model="energy" | "proposal", num_importance; steps, policy)."""
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2:
        shape = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise UserError(f"rows must be a tensor [N, D], got {shape}")
    if len(rows) == 0:
        raise UserError("no rows to evaluate")
    batch_size = check_count(batch_size, "batch_size")
    if not is_integer(seed):
        raise UserError(f"seed must be an integer, got {seed!r}")
    if autocast is not None and not isinstance(autocast, contextlib.AbstractContextManager):
        raise UserError(f"autocast must be None or a context such as torch.autocast('cpu', dtype=torch.bfloat16), "
                        f"got {autocast!r}")
    n, dim = rows.shape
    device = model.device
    masks, given = marginal_masks(n, dim, seed), infill_given(n, dim, seed)
    step_gen = torch.Generator(device=device).manual_seed(seed)
    queries = {"joint": lambda x, s: model.log_prob(x, None, estimator, num_draws, step_gen),
               "marginal": lambda x, s: model.log_prob(x, masks[s].to(device), estimator, num_draws, step_gen),
               "infill": lambda x, s: model.conditional_log_prob(x, ~given[s].to(device), given[s].to(device),
                                                                 estimator, num_draws, generator=step_gen)}
    results = {name: [] for name in QUERIES}
    model.eval()
    batches = range(0, n, batch_size)
    with torch.no_grad(), tqdm(total=len(QUERIES) * len(batches), desc=f"eval ({estimator})",
                               disable=not progress, dynamic_ncols=True) as bar:
        for start in batches:
            x, rows_here = rows[start:start + batch_size].to(device), slice(start, start + batch_size)
            for name in QUERIES:
                with autocast or torch.autocast(device.type, enabled=False), model.query_options(**log_prob_options):
                    results[name].append(queries[name](x, rows_here).float().cpu())
                bar.update(1)
    per_row = {name: torch.cat(parts) for name, parts in results.items()}
    for name, logp in per_row.items():
        if torch.isnan(logp).any():
            raise UserError(f"the model gives NaN {name} log-likelihoods for {int(torch.isnan(logp).sum())} of "
                            f"{n} rows: its weights are damaged or the run diverged")
    return per_row


def evaluate(model: AnyOrderModel, rows: torch.Tensor, /, estimator: str = "exact", num_draws: int = 1,
             batch_size: int = 64, seed: int = 0, autocast=None, progress: bool = True, **log_prob_options) -> dict:
    """Joint, marginal and infilling log-likelihoods of `rows [N, D]`, averaged over rows, with
    standard errors.

    Returns nats per row (`{joint,marginal,infill}_loglik`, higher is better; what tables
    report) and bits per dimension normalised by D (`*_bpd`, the paper's convention, also for
    marginals and infilling), each with `*_se`.
    """
    per_row = row_log_likelihoods(model, rows, estimator, num_draws, batch_size, seed, autocast,
                                  progress, **log_prob_options)
    return {**summarise(per_row, rows.shape[1]), "estimator": estimator, "num_draws": num_draws, "seed": seed}


def summarise(per_row: dict[str, torch.Tensor], dim: int) -> dict:
    """`row_log_likelihoods`' output -> means and standard errors in nats per row and in bpd."""
    report = {"rows": len(next(iter(per_row.values()))), "dim": dim}
    for name, logp in per_row.items():
        report[f"{name}_loglik"], report[f"{name}_loglik_se"] = _mean_se(logp)
        report[f"{name}_bpd"], report[f"{name}_bpd_se"] = _mean_se(bits_per_dim(logp, dim))
    return report


def report_lines(report: dict, unit: str) -> list[str]:
    """An `evaluate` report as the lines `anyorder eval` prints: one per query, in `unit`
    ("bpd": bits per dimension, lower is better; "nats per row": log-likelihood, higher is
    better), each with its standard error over rows."""
    key, better = ("bpd", "lower") if unit == "bpd" else ("loglik", "higher")
    lines = [f"{report['rows']} rows of {report['dim']} variables, {report['estimator']} estimator; "
             f"{unit} ({better} is better) ± standard error over rows"]
    for name in QUERIES:
        if f"{name}_{key}" in report:
            lines.append(f"  {DESCRIPTIONS[name] + ':':<26}{report[f'{name}_{key}']:9.4f} ± "
                         f"{report[f'{name}_{key}_se']:.4f} {unit}")
    return lines
