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
SEPARATION = 20.0   # a fitted slope beyond this (per SD) means the likelihood has no finite maximum


def estimable(hidden: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Bool `[D]`: the `columns` whose holes (`hidden` `[N, D]`) leave at least MIN_CELLS hidden
    and MIN_CELLS observed cells, the least a mechanism is estimated from."""
    return columns & (hidden.sum(0) >= MIN_CELLS) & ((~hidden).sum(0) >= MIN_CELLS)


def fit_conditioned(draws: np.ndarray, hidden: np.ndarray, columns: np.ndarray, covariates: np.ndarray | None = None,
                    iterations: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column j in `columns`, the maximum-likelihood logistic model of "cell j hidden" on
    its own value and the values of the `covariates` columns (bool `[D]`, None for none;
    those with a hole in any row are left out, so every covariate is observed): logit
    P(hidden_ij) = a_j x_ij + sum_k c_jk x_ik + b_j. (a `[D]`, b `[D]`, C `[D, D]` with c_jk
    in row j and a zero diagonal, the standard error of a `[D]`.) Without covariates this is
    the self-masking mechanism of the module, sigmoid(a_j x_j + b_j), which
    missingness="self-masking" assumes; missingness="auto" conditions on the always-observed
    numeric columns.

    Holes that follow always-observed columns (missing at random: MAR, as in the logistic
    MAR simulators of MIWAE and HyperImpute, and wherever holes depend on covariates that are
    always recorded) are explained by the c_jk, so a_j, the dependence on the cell's own value
    beyond them, is 0; under self-masking it is not. Without the c_jk the slope is not 0
    under such MAR: the holes of column j follow the observed columns, these predict x_j,
    and a self-masking slope mimics that. The own value of a hidden cell enters through the
    model's draws of it given the row's observed cells (`draws` `[M, N, D]`, in the same
    (standardised) units for every row, observed cells holding their values): a hidden
    cell's likelihood is the average over the draws of P(hidden_ij | x_ij^(m), covariates),
    an observed one's P(observed_ij | x_ij, covariates), the other columns' holes taken as
    not informative about their values.
    Columns with holes of their own are no covariates: conditioning on their observed values
    and hole indicators was tried, and where every column is self-masked (correlated columns,
    each hole telling of its neighbours' large values) the indicators took up most of the
    own-value slope (MAGIC, self-masking with slope 2 per SD: one column of ten declared,
    against nine without them). So holes that follow other sometimes-missing cells are not
    modelled, and can still be taken for self-masking.

    The standard error is from the observed information (the inverse Hessian of the negative
    log-likelihood at the optimum): under a_j = a0 the Wald statistic (a_j - a0)^2 / se^2 is
    asymptotically chi-squared with one degree of freedom, provided the draws follow the
    holes' conditionals. Columns not estimable (`estimable`), and columns whose likelihood has
    no finite maximum (a coefficient beyond SEPARATION per SD, or no finite standard error:
    separable data, as where a mixture of Gaussians meets a column with a point mass), get
    a = b = 0 (missing completely at random: their weights are constant), a zero row of C
    and a standard error of NaN."""
    m, n, d = draws.shape
    a, b, weights, se = np.zeros(d), np.zeros(d), np.zeros((d, d)), np.full(d, np.nan)
    given = (np.zeros(d, dtype=bool) if covariates is None else covariates) & ~hidden.any(0)
    for j in np.flatnonzero(estimable(hidden, columns)):
        used = [k for k in np.flatnonzero(given) if k != j and draws[0, :, k].std() > 0]
        holes = hidden[:, j]
        at_holes = torch.from_numpy(holes)
        design = torch.from_numpy(np.ascontiguousarray(draws[0][:, used])).double()     # [N, K]
        guessed = torch.from_numpy(np.ascontiguousarray(draws[:, holes, j])).double()  # [M, H]
        seen = torch.from_numpy(draws[0, ~holes, j]).double()                         # [N - H]
        rate = float(holes.mean())
        start = torch.zeros(len(used) + 2, dtype=torch.float64)
        start[-1] = float(np.log(rate / (1 - rate)))
        params = start.clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([params], max_iter=iterations, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-9, tolerance_change=1e-14)

        def negative_log_likelihood(theta):
            given_part = design @ theta[1:-1] + theta[-1]                       # [N]
            hidden_cells = torch.nn.functional.logsigmoid(theta[0] * guessed + given_part[at_holes])
            observed_cells = torch.nn.functional.logsigmoid(-(theta[0] * seen + given_part[~at_holes]))
            return -((torch.logsumexp(hidden_cells, 0) - np.log(m)).sum() + observed_cells.sum())

        def loss():
            optimiser.zero_grad()
            value = negative_log_likelihood(params) / n
            value.backward()
            return value

        optimiser.step(loss)
        theta = params.detach().clone()
        hessian = torch.autograd.functional.hessian(negative_log_likelihood, theta).numpy()
        with np.errstate(all="ignore"):
            variance = np.linalg.pinv(hessian)[0, 0]
        coefficients = theta.numpy()
        if not (np.all(np.abs(coefficients[:-1]) <= SEPARATION) and np.isfinite(variance) and variance > 0):
            continue
        se[j] = np.sqrt(variance)
        a[j], b[j] = coefficients[0], coefficients[-1]
        weights[j, used] = coefficients[1:-1]
    return a, b, weights, se


def wald(a: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Wald statistics `[D]` of slopes a against 0: (a / se)^2, chi-squared with one degree of
    freedom under a = 0; 0 where se is not finite (not testable)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a / se) ** 2
    return np.where(np.isfinite(out), out, 0.0)


def against_reference(a: np.ndarray, se: np.ndarray, statistic: np.ndarray, reference_a: np.ndarray,
                      reference_se: np.ndarray) -> np.ndarray:
    """Per column, the Wald statistic `[D]` of the slope a against a reference slope fitted
    the same way on holes known to be missing at random (the imputer's held-out rows):
    (a - reference_a)^2 / (se^2 + reference_se^2), chi-squared with one degree of freedom
    where both slopes are unbiased for the same value. A model whose conditionals are off
    in a column (e.g. a zero-inflated one blurred by a mixture of Gaussians) shows a slope
    even where holes are at random, and shows it on the reference holes too; testing
    against slope 0 there declares self-masking that is not, testing against the reference
    does not. Where a column has no reference (NaN), its `statistic` (`wald`'s, against slope
    0); where it has one but a has no finite standard error here, 0 (not testable)."""
    with np.errstate(invalid="ignore"):
        wald = (a - reference_a) ** 2 / (se ** 2 + reference_se ** 2)
    return np.where(np.isnan(reference_se), statistic, np.where(np.isfinite(wald), wald, 0.0))


def self_masked_columns(statistic: np.ndarray, tested: np.ndarray, alpha: float) -> np.ndarray:
    """Bool `[D]`: the columns whose Wald statistic (`wald`, `against_reference`) rejects
    "missing at random within the column" at family-wise level `alpha` over the `tested`
    columns (Bonferroni: each column at alpha / their number, against chi-squared with one
    degree of freedom). Under the null for every column, some column is declared
    self-masked with probability at most alpha (asymptotically)."""
    from scipy.stats import chi2
    count = int(np.count_nonzero(tested))
    if count == 0:
        return np.zeros(len(statistic), dtype=bool)
    return tested & (chi2.sf(statistic, 1) < alpha / count)


def log_weights(draws: np.ndarray, hidden: np.ndarray, a: np.ndarray, b: np.ndarray,
                offset: np.ndarray | None = None) -> np.ndarray:
    """Normalised log importance weights `[M, N]` of joint draws `[M, N, D]`: per row, the sum
    over its holes of log sigmoid(a_j x_j + b_j + offset_ij), minus its log-sum-exp over the
    draws. `offset` `[N, D]` (0 where None): the part of each cell's logit that the row's
    observed cells give (`fit_conditioned`'s sum_k c_jk x_ik); observed cells do not vary
    between the row's draws, so only the hole's own drawn value moves its weight."""
    t = torch.from_numpy(draws).double()
    logit = t * torch.from_numpy(a) + torch.from_numpy(b)
    if offset is not None:
        logit = logit + torch.from_numpy(offset).double()
    per_cell = torch.nn.functional.logsigmoid(logit)
    total = (per_cell * torch.from_numpy(hidden)).sum(-1)                  # [M, N]
    return (total - torch.logsumexp(total, 0)).numpy()


def weighted_mean(draws: np.ndarray, logw: np.ndarray) -> np.ndarray:
    """The weighted mean `[N, D]` of draws `[M, N, D]` under log weights `[M, N]`."""
    return (np.exp(logw)[..., None] * draws).sum(0)


def weighted_quantiles(draws: np.ndarray, logw: np.ndarray, levels) -> np.ndarray:
    """Quantiles `[Q, N, ...]` of draws `[M, N, ...]` under normalised log weights `[M, N]`:
    the sorted draws interpolated linearly against their cumulative weight times M / (M + 1),
    which with equal weights is k / (M + 1) at the k-th smallest, the places of
    `anyorder.impute.draw_quantiles` (so equal weights give its quantiles); levels below
    the first place or above the last give the smallest or largest draw."""
    m = len(draws)
    weights = np.broadcast_to(np.exp(logw).reshape(logw.shape + (1,) * (draws.ndim - 2)), draws.shape)
    order = np.argsort(draws, 0, kind="stable")
    ordered = np.take_along_axis(draws, order, 0)
    place = np.cumsum(np.take_along_axis(weights, order, 0), 0) * m / (m + 1)
    out = []
    for q in levels:
        count = (place < q).sum(0)[None]
        high, low = np.clip(count, 0, m - 1), np.clip(count - 1, 0, m - 1)
        p_low, p_high = np.take_along_axis(place, low, 0), np.take_along_axis(place, high, 0)
        frac = np.clip((q - p_low) / np.where(p_high > p_low, p_high - p_low, 1.0), 0, 1)
        v_low, v_high = np.take_along_axis(ordered, low, 0), np.take_along_axis(ordered, high, 0)
        out.append((v_low + frac * (v_high - v_low))[0])
    return np.stack(out)
