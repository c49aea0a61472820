"""anyorder.self_masking: the self-masking mechanism recovered by maximum likelihood, and the
reweighted draws' mean against the self-masked posterior mean computed by quadrature."""

import numpy as np
import pytest

from anyorder.self_masking import fit_mechanism, log_weights, weighted_mean


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def self_masked_rows(n, a, b, rho, seed):
    """Standard bivariate normal rows (correlation rho); column 1 hidden with probability
    sigmoid(a x1 + b); exact joint draws of column 1 given column 0 (the model a complete-data
    fit would learn), 400 per row."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    x1 = rho * x0 + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
    rows = np.stack([x0, x1], 1)
    hidden = np.zeros((n, 2), dtype=bool)
    hidden[:, 1] = rng.random(n) < sigmoid(a * x1 + b)
    draws = np.repeat(rows[None], 400, 0)
    draws[:, :, 1] = rho * x0 + np.sqrt(1 - rho ** 2) * rng.normal(size=(400, n))
    return rows, hidden, draws


def test_the_mechanism_is_recovered_and_the_reweighted_mean_is_the_self_masked_posterior_mean():
    a, b, rho = 2.0, -1.5, 0.6
    rows, hidden, draws = self_masked_rows(3000, a, b, rho, seed=0)
    got_a, got_b = fit_mechanism(draws, np.where(hidden, 0.0, rows), hidden, np.array([False, True]))
    # 3000 rows, ~900 hidden: the slope's standard error is about 0.15 (Fisher information of
    # the logistic likelihood at this design); 0.6 is four of them
    assert got_a[0] == 0 and got_b[0] == 0                 # a column not asked for stays random
    assert abs(got_a[1] - a) < 0.6 and abs(got_b[1] - b) < 0.6
    # with the true mechanism, the weighted mean of the draws is E[x1 s(a x1 + b)] / E[s(a x1 + b)]
    # under x1 | x0 ~ N(rho x0, 1 - rho^2): by quadrature on a fine grid, for a few rows
    logw = log_weights(draws, hidden, np.array([0.0, a]), np.array([0.0, b]))
    fill = weighted_mean(draws, logw)
    grid = np.linspace(-8, 8, 4001)
    rows_hidden = np.flatnonzero(hidden[:, 1])[:200]
    exact = []
    for i in rows_hidden:
        density = np.exp(-(grid - rho * rows[i, 0]) ** 2 / (2 * (1 - rho ** 2))) * sigmoid(a * grid + b)
        exact.append((grid * density).sum() / density.sum())
    exact = np.array(exact)
    # self-normalised weights: per row the error's SD is about the posterior SD (below 0.8)
    # over the square root of the effective sample size (checked to exceed 100 here, so
    # SD < 0.08); the mean over 200 rows is off by less than 4 of 0.08 / sqrt(200), each
    # row by less than 5 SD
    ess = 1 / np.exp(2 * logw[:, rows_hidden]).sum(0)
    assert ess.min() > 100
    error = fill[rows_hidden, 1] - exact
    assert abs(error.mean()) < 4 * 0.08 / np.sqrt(200) and np.abs(error).max() < 0.4
    # and the fill moved towards the large values that self-masking hides, as the truth did
    assert (exact > rho * rows[rows_hidden, 0]).all()
    # the hidden truths scatter about their posterior means with SD below 0.8: the mean of
    # 200 is within 4 x 0.8 / sqrt(200) = 0.23
    assert fill[rows_hidden, 1].mean() - rows[rows_hidden, 1].mean() == pytest.approx(0, abs=0.23)
