"""Test-set likelihoods as the paper reports them: joint and card-uniform marginal bpd.

Marginal masks are drawn once from a fixed seed, so every model evaluated with the same
seed answers the same queries. Every figure comes with its standard error over rows.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from . import lattice
from .errors import UserError
from .model import AnyOrderModel, bits_per_dim


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    se = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return values.mean().item(), se


def marginal_masks(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """The card-uniform marginal queries `evaluate` asks with this seed: `[rows, dim]` bool."""
    return lattice.query_masks(rows, dim, "card-uniform", generator=torch.Generator().manual_seed(seed))


def row_log_likelihoods(model: AnyOrderModel, rows: torch.Tensor, /, estimator: str = "exact",
                        num_draws: int = 1, batch_size: int = 64, seed: int = 0, autocast=None,
                        progress: bool = True, **log_prob_options) -> dict[str, torch.Tensor]:
    """log p(x) and log p(x_e) with e from `marginal_masks(seed)`, per row of `rows [N, D]`:
    {"joint": [N], "marginal": [N]} in nats, on the CPU (for paired comparisons of models).
    `log_prob_options` are the model's query options (ACE: model="energy" | "proposal",
    num_importance)."""
    if len(rows) == 0:
        raise UserError("no rows to evaluate")
    n, dim = rows.shape
    device = next(model.parameters()).device
    masks = marginal_masks(n, dim, seed)
    step_gen = torch.Generator(device=device).manual_seed(seed)
    results = {"joint": [], "marginal": []}
    model.eval()
    batches = range(0, n, batch_size)
    with torch.no_grad(), tqdm(total=2 * len(batches), desc=f"eval ({estimator})", disable=not progress,
                               dynamic_ncols=True) as bar:
        for start in batches:
            x = rows[start:start + batch_size].to(device)
            for name, mask in (("joint", None), ("marginal", masks[start:start + batch_size].to(device))):
                with autocast or torch.autocast(device.type, enabled=False), model.query_options(**log_prob_options):
                    logp = model.log_prob(x, mask, estimator=estimator, num_draws=num_draws,
                                          generator=step_gen)
                results[name].append(logp.float().cpu())
                bar.update(1)
    per_row = {name: torch.cat(parts) for name, parts in results.items()}
    for name, logp in per_row.items():
        if torch.isnan(logp).any():
            raise UserError(f"the model gives NaN {name} log-likelihoods for {int(torch.isnan(logp).sum())} of "
                            f"{n} rows: its weights are damaged or the run diverged")
    return per_row


def evaluate(model: AnyOrderModel, rows: torch.Tensor, /, estimator: str = "exact", num_draws: int = 1,
             batch_size: int = 64, seed: int = 0, autocast=None, progress: bool = True, **log_prob_options) -> dict:
    """Joint and marginal log-likelihoods of `rows [N, D]`, averaged over rows, with standard errors.

    Returns nats per row (`*_loglik`, higher is better; what tables report) and bits per
    dimension normalised by D (`*_bpd`, the paper's convention, also for marginals).
    """
    per_row = row_log_likelihoods(model, rows, estimator, num_draws, batch_size, seed, autocast,
                                  progress, **log_prob_options)
    return {**summarise(per_row, rows.shape[1]), "estimator": estimator, "num_draws": num_draws, "seed": seed}


def summarise(per_row: dict[str, torch.Tensor], dim: int) -> dict:
    """`row_log_likelihoods`' output -> means and standard errors in nats per row and in bpd."""
    report = {"rows": len(per_row["joint"]), "dim": dim}
    for name, logp in per_row.items():
        report[f"{name}_loglik"], report[f"{name}_loglik_se"] = _mean_se(logp)
        report[f"{name}_bpd"], report[f"{name}_bpd_se"] = _mean_se(bits_per_dim(logp, dim))
    return report
