"""Imputation under self-masking missingness (missing not at random): a cell of column j is
hidden with probability sigmoid(a_j x_j + b_j) of its own value, so large values (a_j > 0)
go missing more often.

A model of the complete rows gives p(x_j | the row's observed cells); under self-masking the
hole's value follows instead

    p(x_j | observed, x_j hidden)  ∝  p(x_j | observed) · sigmoid(a_j x_j + b_j),

and a row's joint draws are weighted by the product of that factor over its holes
(importance weighting of the model's joint draws: the weights make them draws of the
self-masked posterior). The mechanism (a_j, b_j) is estimated from the rows being filled
themselves by maximum likelihood of which cells are hidden: an observed cell contributes
log(1 - sigmoid(a_j x_j + b_j)) at its value, a hidden one log E[sigmoid(a_j x_j + b_j)]
over the model's draws of it. That is identifiable only because the model was trained on
rows whose values were not self-masked (the complete rows of `fit`): it knows where the
hidden values would have fallen, and the rows to fill show which of them went missing.
Where the fit rows were themselves self-masked, the model has learnt the biased observed
distribution and this correction cannot recover it. Not used for categorical columns.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_CELLS = 20      # hidden and observed cells a column needs for its mechanism to be estimated


def fit_mechanism(draws: np.ndarray, values: np.ndarray, hidden: np.ndarray, columns: np.ndarray,
                  iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood self-masking slopes a `[D]` and intercepts b `[D]` (see the module)
    from joint draws `[M, N, D]`, the rows `[N, D]` (any value in hidden cells), the holes
    `hidden` `[N, D]` and the columns to estimate `columns` `[D]` bool; all in the same
    (standardised) units. Columns not estimated, or with fewer than MIN_CELLS hidden or
    observed cells, get a = 0 (missing completely at random): their weights are constant."""
    m, n, d = draws.shape
    a, b = np.zeros(d), np.zeros(d)
    for j in np.flatnonzero(columns):
        holes = hidden[:, j]
        if holes.sum() < MIN_CELLS or (~holes).sum() < MIN_CELLS:
            continue
        seen = torch.from_numpy(values[~holes, j]).double()
        guessed = torch.from_numpy(draws[:, holes, j]).double()         # [M, H]
        params = torch.tensor([0.0, float(np.log(holes.mean() / (1 - holes.mean())))], dtype=torch.float64,
                              requires_grad=True)
        optimiser = torch.optim.LBFGS([params], max_iter=iterations, line_search_fn="strong_wolfe")

        def loss():
            optimiser.zero_grad()
            slope, intercept = params[0], params[1]
            observed = torch.nn.functional.logsigmoid(-(slope * seen + intercept)).sum()
            missing = (torch.logsumexp(torch.nn.functional.logsigmoid(slope * guessed + intercept), 0)
                       - np.log(m)).sum()
            value = -(observed + missing) / n
            value.backward()
            return value

        optimiser.step(loss)
        a[j], b[j] = (float(v) for v in params.detach())
    return a, b


def log_weights(draws: np.ndarray, hidden: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised log importance weights `[M, N]` of joint draws `[M, N, D]`: per row, the sum
    over its holes of log sigmoid(a_j x_j + b_j), minus its log-sum-exp over the draws."""
    t = torch.from_numpy(draws).double()
    per_cell = torch.nn.functional.logsigmoid(t * torch.from_numpy(a) + torch.from_numpy(b))
    total = (per_cell * torch.from_numpy(hidden)).sum(-1)                  # [M, N]
    return (total - torch.logsumexp(total, 0)).numpy()


def weighted_mean(draws: np.ndarray, logw: np.ndarray) -> np.ndarray:
    """The weighted mean `[N, D]` of draws `[M, N, D]` under log weights `[M, N]`."""
    return (np.exp(logw)[..., None] * draws).sum(0)
