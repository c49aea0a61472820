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
                    iterations: int = 100, clusters: np.ndarray | None = None, separated: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    under such MAR: the holes of column j follow the observed columns,
    these predict x_j, and a self-masking slope mimics that. The own value of a hidden cell
    enters through the model's draws of it given the row's observed cells (`draws` `[M, N, D]`,
    observed cells holding their values): a hidden cell's likelihood is the average over the
    draws of P(hidden_ij | x_ij^(m), covariates), an observed one's P(observed_ij | x_ij,
    covariates), the other columns' holes taken as not informative about their values.
    Columns with holes of their own are no covariates: conditioning on their observed values
    and hole indicators was tried, and where every column is self-masked (correlated columns,
    each hole telling of its neighbours' large values) the indicators took up most of the
    own-value slope (MAGIC, self-masking with slope 2 per SD: one column of ten declared,
    against nine without them). So holes that follow other sometimes-missing cells are not
    modelled, and can still be taken for self-masking.

    The standard error is from the observed information (the inverse Hessian of the negative
    log-likelihood at the optimum): under a_j = a0 the Wald statistic (a_j - a0)^2 / se^2 is
    asymptotically chi-squared with one degree of freedom, provided the draws follow the
    holes' conditionals. With `clusters` (int `[N]`, rows with the same id are masked copies
    of one row) the standard error is the cluster-robust sandwich H^-1 (sum over clusters of
    g_c g_c') H^-1 instead, g_c the summed gradient of the cluster's rows: copies of a row
    share its values, so their terms are correlated and the observed information alone
    would overstate what they tell (`_cluster_variance`). Columns not estimable (`estimable`), and columns whose likelihood has
    no finite maximum (a coefficient beyond SEPARATION per SD, or no finite standard error:
    separable data), get a = b = 0, a zero row of C and a standard error of NaN; with
    `separated`, they keep the coefficients where the optimiser stopped (far along the ridge
    towards the supremum: a sharp threshold in the own value, the mechanism's limit), still
    with a standard error of NaN (`score_against` tests them)."""
    _, n, d = draws.shape
    a, b, weights, se = np.zeros(d), np.zeros(d), np.zeros((d, d)), np.full(d, np.nan)
    given = (np.zeros(d, dtype=bool) if covariates is None else covariates) & ~hidden.any(0)
    for j in np.flatnonzero(estimable(hidden, columns)):
        likelihood = _ColumnLikelihood(draws, hidden, given, j)
        theta = _minimise(likelihood, likelihood.start(), iterations, n)
        hessian = torch.autograd.functional.hessian(likelihood, theta).numpy()
        with np.errstate(all="ignore"):
            inverse = np.linalg.pinv(hessian)
            variance = inverse[0, 0] if clusters is None else _cluster_variance(inverse, likelihood, theta, clusters)
        coefficients = theta.numpy()
        finite = np.all(np.abs(coefficients[:-1]) <= SEPARATION) and np.isfinite(variance) and variance > 0
        if not (finite or separated):
            continue
        se[j] = np.sqrt(variance) if finite else np.nan
        a[j], b[j] = coefficients[0], coefficients[-1]
        weights[j, likelihood.used] = coefficients[1:-1]
    return a, b, weights, se


def fit_jointly(draws: np.ndarray, hidden: np.ndarray, columns: np.ndarray, covariates: np.ndarray,
                a: np.ndarray, b: np.ndarray, weights: np.ndarray, sweeps: int = 5,
                iterations: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`fit_conditioned`'s models of the `columns` (a, b, C from it) refitted by the
    likelihood of all their holes together: a row's holes in these columns are hidden with
    probability E[prod_j sigmoid(a_j x_j + z'c_j + b_j)] over the row's joint draws, where
    `fit_conditioned` takes each column's holes alone, E[sigmoid(a_j x_j + ...)] over the
    draws of x_j. The joint draws come from a model of complete rows: given a row's observed
    cells they do not know that its other holes are likely large, though under self-masking
    of correlated columns they are, and so x_j with them; each column alone then sees its
    holes' draws too low, and its slope too flat (fair, self-masked at slope 2 per SD: 1.2-1.7).
    Coordinate ascent on the joint likelihood: for column j with the others held, a row's
    term is E[sigmoid(a_j x_j + ...) w], w = prod over the row's other holes k of
    sigmoid(a_k x_k + ...), i.e. column j's likelihood with its draws weighted by w
    (`_ColumnLikelihood`); `sweeps` passes over the columns, each from the last values.
    Columns whose coefficients are not finite are left as they are. Returns (a, b, C)."""
    a, b, weights = a.copy(), b.copy(), weights.copy()
    _, n, _ = draws.shape
    given = covariates & ~hidden.any(0)
    observed = np.where(given, draws[0], 0.0)
    modelled = np.flatnonzero(columns & np.isfinite(a) & np.isfinite(b))
    for _ in range(sweeps):
        for j in modelled:
            others = hidden & np.isin(np.arange(len(a)), modelled[modelled != j])
            weighted = log_weights(draws, others, a, b, observed @ weights.T)
            likelihood = _ColumnLikelihood(draws, hidden, given, j, weighted)
            start = torch.from_numpy(np.concatenate([[a[j]], weights[j, likelihood.used], [b[j]]]))
            theta = _minimise(likelihood, start, iterations, n).numpy()
            if np.all(np.isfinite(theta)) and np.all(np.abs(theta[:-1]) <= SEPARATION):
                a[j], b[j] = theta[0], theta[-1]
                weights[j] = 0.0
                weights[j, likelihood.used] = theta[1:-1]
    return a, b, weights


def score_against(draws: np.ndarray, hidden: np.ndarray, columns: np.ndarray, covariates: np.ndarray,
                  slope: np.ndarray, slope_se: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Per column j in `columns`, the score (Rao) statistic `[D]` of `fit_conditioned`'s model
    against own-value slope `slope[j]`, a slope estimated elsewhere with standard error
    `slope_se[j]` (0: a known value); 0 in other columns and where the information is not
    finite. Only the model under the null is fitted (the intercept and the covariates'
    coefficients, the slope held at slope[j]), so the statistic exists where the full fit has
    no finite maximum: where the draws and the observed values are separable, as when
    self-masking hid nearly every nonzero value of a column that is mostly exactly 0 and
    the model's draws spread where the observed cells do not. With U the score of the slope
    there and v = [H^-1]_00 from the full Hessian H of the negative log-likelihood (1 / v
    the slope's information after the other coefficients are profiled out), U v estimates
    the fitted slope's distance from slope[j] to first order, with variance v + slope_se^2
    (the two fits use different rows), so the statistic (U v)^2 / (v + slope_se^2) is the
    Wald statistic of `against_reference` to first order and chi-squared with one degree of
    freedom under the null."""
    _, n, d = draws.shape
    statistic = np.zeros(d)
    given = covariates & ~hidden.any(0)
    for j in np.flatnonzero(estimable(hidden, columns)):
        negative_log_likelihood = _ColumnLikelihood(draws, hidden, given, j)
        fixed = torch.tensor([float(slope[j])], dtype=torch.float64)
        rest = _minimise(lambda others: negative_log_likelihood(torch.cat([fixed, others])),
                         negative_log_likelihood.start()[1:], iterations, n)
        theta = torch.cat([fixed, rest]).requires_grad_(True)
        score = -float(torch.autograd.grad(negative_log_likelihood(theta), theta)[0][0])
        hessian = torch.autograd.functional.hessian(negative_log_likelihood, theta.detach()).numpy()
        with np.errstate(all="ignore"):
            variance = np.linalg.pinv(hessian)[0, 0]
            value = (score * variance) ** 2 / (variance + float(slope_se[j]) ** 2)
        if np.isfinite(value) and variance > 0:
            statistic[j] = value
    return statistic


class _ColumnLikelihood:
    """Column j's negative log-likelihood of theta = (own-value slope, covariates'
    coefficients, intercept) in `fit_conditioned`'s model, as a function: the covariates
    `used` (the `given` columns other than j whose first draw varies), the design `[N, K]`
    (their values), the own value's draws `own` `[M, N]` and `sign` `[N]` (+1 hidden, -1
    observed). Each row's term is -log mean_m sigmoid(sign (theta_0 x_m + z'c + b)): a hidden
    cell's average over its draws, an observed one's at its value, which every draw holds,
    so it is computed once rather than M times (a third of the time of the M x N form).
    With `log_weights` `[M, N]` (normalised per row) the hidden cell's average is weighted
    (`fit_jointly`: the draws weighted by the row's other holes)."""

    def __init__(self, draws: np.ndarray, hidden: np.ndarray, given: np.ndarray, j: int,
                 log_weights: np.ndarray | None = None):
        self.used = [k for k in np.flatnonzero(given) if k != j and draws[0, :, k].std() > 0]
        self.design = torch.from_numpy(np.ascontiguousarray(draws[0][:, self.used])).double()     # [N, K]
        self.own = torch.from_numpy(np.ascontiguousarray(draws[:, :, j])).double()             # [M, N]
        self.sign = torch.from_numpy(np.where(hidden[:, j], 1.0, -1.0))                        # hidden: +, observed: -
        self.holes = torch.from_numpy(hidden[:, j])
        self.guessed, self.seen = self.own[:, self.holes], self.own[0, ~self.holes]           # [M, H], [N - H]
        self.rate, self.draws = float(hidden[:, j].mean()), len(draws)
        self.log_weights = torch.full_like(self.guessed, -np.log(self.draws)) if log_weights is None else \
            torch.from_numpy(np.ascontiguousarray(log_weights[:, hidden[:, j]])).double()

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        given_part = self.design @ theta[1:-1] + theta[-1]                                     # [N]
        hidden_cells = torch.nn.functional.logsigmoid(theta[0] * self.guessed + given_part[self.holes])
        observed_cells = torch.nn.functional.logsigmoid(-(theta[0] * self.seen + given_part[~self.holes]))
        return -(torch.logsumexp(hidden_cells + self.log_weights, 0).sum() + observed_cells.sum())

    def start(self) -> torch.Tensor:
        """Slope and coefficients 0, the intercept the logit of the column's share of holes."""
        start = torch.zeros(len(self.used) + 2, dtype=torch.float64)
        start[-1] = float(np.log(self.rate / (1 - self.rate)))
        return start


def _minimise(objective, start: torch.Tensor, iterations: int, rows: int) -> torch.Tensor:
    """The argmin of `objective` (a negative log-likelihood summed over `rows` rows) from
    `start`, by L-BFGS with strong-Wolfe line search on the per-row mean (tolerances tight
    enough for the Newton-method reference of the tests)."""
    params = start.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([params], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-14)

    def loss():
        optimiser.zero_grad()
        value = objective(params) / rows
        value.backward()
        return value

    optimiser.step(loss)
    return params.detach().clone()


def _cluster_variance(inverse: np.ndarray, likelihood: _ColumnLikelihood, theta: torch.Tensor,
                      clusters: np.ndarray) -> float:
    """The own-value slope's cluster-robust variance: [H^-1 B H^-1]_00 with `inverse` = H^-1
    and B the sum over clusters of the outer product of their rows' summed score. Row i's
    negative log-likelihood is -log mean_m sigmoid(s_i L_im), L_im = theta_0 x_im + z_i'c + b
    (s_i = +1 hidden, -1 observed), whose gradient is -s_i sum_m pi_im sigmoid(-s_i L_im)
    dL_im/dtheta, pi_im the draws' posterior shares softmax_m(log sigmoid(s_i L_im))."""
    own, design, sign = likelihood.own, likelihood.design, likelihood.sign
    logit = theta[0] * own + (design @ theta[1:-1] + theta[-1])                      # [M, N]
    share = torch.softmax(torch.nn.functional.logsigmoid(sign * logit), 0)
    push = share * torch.sigmoid(-sign * logit)                                      # [M, N]
    total = push.sum(0)
    gradient = -sign[:, None] * torch.cat([(push * own).sum(0)[:, None], total[:, None] * design,
                                           total[:, None]], 1)                       # [N, K + 2]
    _, index = np.unique(clusters, return_inverse=True)
    summed = np.zeros((index.max() + 1, gradient.shape[1]))
    np.add.at(summed, index, gradient.numpy())
    row = inverse[0]
    return float(((summed @ row) ** 2).sum())


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
    """Bool `[D]`: the columns whose statistic (chi-squared with one degree of freedom under
    "missing at random within the column": `against_reference`, `wald`) rejects at
    family-wise level `alpha` over the `tested` columns, by Holm's step-down procedure: the
    p-values sorted, the k-th smallest (k = 1, 2, ...) compared with alpha / (m - k + 1), m
    the number tested, every column declared up to the first that is not below its bound.
    Under the null for every column, some column is declared with probability at most alpha
    (asymptotically), as with Bonferroni (each at alpha / m), whose rejections Holm's include:
    once the strongest columns are declared, the rest are tested among fewer."""
    from scipy.stats import chi2
    count = int(np.count_nonzero(tested))
    out = np.zeros(len(statistic), dtype=bool)
    if count == 0:
        return out
    columns = np.flatnonzero(tested)
    p_value = chi2.sf(statistic[columns], 1)
    for k, position in enumerate(np.argsort(p_value, kind="stable")):
        if not p_value[position] < alpha / (count - k):
            break
        out[columns[position]] = True
    return out


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


def weighted_resample(draws: np.ndarray, logw: np.ndarray, m: int, generator: np.random.Generator) -> np.ndarray:
    """m of the draws `[M, N, D]` per row, picked with replacement in proportion to the
    weights of the log weights `[M, N]` (sampling-importance-resampling): `[m, N, D]`."""
    picks = np.stack([generator.choice(len(draws), size=m, p=w / w.sum()) for w in np.exp(logw).T], 1)
    return draws[picks, np.arange(draws.shape[1])]


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
