"""anyorder.self_masking: the self-masking mechanism recovered by maximum likelihood, and the
reweighted draws' mean against the self-masked posterior mean computed by quadrature, the
slope's Wald test against its chi-squared null and its power, and the weighted draws'
quantiles against `draw_quantiles` and against the hidden truths' coverage."""

import numpy as np
import pytest

import torch

from anyorder.impute import draw_quantiles
from anyorder.self_masking import (fit_conditioned, fit_jointly, log_weights, score_against, self_masked_columns,
                                   wald, weighted_mean, weighted_quantiles)


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def self_masked_rows(n, a, b, rho, seed):
    """Standard bivariate normal rows (correlation rho); column 1 hidden with probability
    sigmoid(a x1 + b); exact joint draws of column 1 given column 0 (the model a complete-data
    fit would learn), 400 per row, observed cells holding their values (as the imputer's draws)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    x1 = rho * x0 + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
    rows = np.stack([x0, x1], 1)
    hidden = np.zeros((n, 2), dtype=bool)
    hidden[:, 1] = rng.random(n) < sigmoid(a * x1 + b)
    draws = np.repeat(rows[None], 400, 0)
    draws[:, :, 1] = np.where(hidden[:, 1], rho * x0 + np.sqrt(1 - rho ** 2) * rng.normal(size=(400, n)), x1)
    return rows, hidden, draws


def test_the_mechanism_is_recovered_and_the_reweighted_mean_is_the_self_masked_posterior_mean():
    a, b, rho = 2.0, -1.5, 0.6
    rows, hidden, draws = self_masked_rows(3000, a, b, rho, seed=0)
    got_a, got_b, _, _ = fit_conditioned(draws, hidden, np.array([False, True]))
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


def test_the_wald_statistic_without_covariates_follows_its_chi_squared_null_and_detects_self_masking():
    # Missing completely at random (slope 0, ~20% holes), exact draws of the hidden values'
    # conditionals (100 per row, as the imputer takes), 250 rows (the benchmark's test rows):
    # the slope's Wald statistic is asymptotically chi-squared(1), mean 1 and variance 2 (the
    # test missingness="auto" runs where no column is always observed). Over 60 seeded
    # replications the mean lies within 4 SE (4 sqrt(2 / 60) = 0.73) of 1, and the share
    # rejected at 5% has binomial SD 0.028: at most 0.05 + 4 x 0.028, i.e. 9 of 60.
    statistics = []
    for seed in range(60):
        rows, hidden, draws = self_masked_rows(250, 0.0, -1.4, 0.6, seed)
        a, _, _, se = fit_conditioned(draws[:100], hidden, np.array([False, True]))
        statistic = wald(a, se)
        assert statistic[0] == 0 and np.isfinite(se[1])
        statistics.append(statistic[1])
    statistics = np.array(statistics)
    assert abs(statistics.mean() - 1) < 0.73
    assert (statistics > 3.841).sum() <= 9          # 3.841: chi-squared(1)'s 95% point
    # Self-masked with slope 2 (per SD): the statistic's mean is about 25 here, its SD about
    # 3 (20 seeds), so missing it at 1% (statistic below 6.63) is a 6-SD event; every one of
    # 5 replications detects it, and an untested column is never declared
    for seed in range(5):
        rows, hidden, draws = self_masked_rows(250, 2.0, -1.4, 0.6, 100 + seed)
        a, _, _, se = fit_conditioned(draws[:100], hidden, np.array([False, True]))
        assert list(self_masked_columns(wald(a, se), np.array([False, True]), 0.01)) == [False, True]


def test_self_masked_columns_corrects_for_the_number_of_columns_tested():
    # chi-squared(1) points: 6.63 at 1%, 9.14 at 0.25% (1% over four columns)
    statistic = np.array([7.0, 7.0, 9.5, 0.0, 50.0])
    tested = np.array([True, True, True, True, False])
    assert list(self_masked_columns(statistic, tested, 0.01)) == [False, False, True, False, False]
    assert list(self_masked_columns(statistic, tested & [True, False, False, False, False], 0.01)) == \
        [True, False, False, False, False]
    assert not self_masked_columns(statistic, np.zeros(5, dtype=bool), 0.01).any()


def test_weighted_quantiles_are_draw_quantiles_under_equal_weights_and_cover_self_masked_truths():
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(100, 30, 3))
    levels = (0.001, 0.05, 0.5, 0.95, 0.999)
    equal = weighted_quantiles(draws, np.full((100, 30), -np.log(100)), levels)
    assert np.allclose(equal, draw_quantiles(torch.from_numpy(draws), levels).numpy(), rtol=0, atol=1e-12)
    # Self-masked hidden values (slope 2): the weighted draws' 90% intervals, under the true
    # mechanism, hold the hidden truths at 0.9 up to the quantiles' discreteness (400 draws,
    # effective size > 100: the interval's ends move each cell's coverage by a few percent,
    # unbiased on average) and the binomial SD over ~900 cells (0.01): within 0.04. Weights
    # that grow with the value put every weighted quantile at or above the unweighted one
    # (the weighted empirical distribution function lies below the plain one: Chebyshev's
    # sum inequality), in every cell.
    a, b, rho = 2.0, -1.5, 0.6
    rows, hidden, draws = self_masked_rows(3000, a, b, rho, seed=2)
    logw = log_weights(draws, hidden, np.array([0.0, a]), np.array([0.0, b]))
    low, high = weighted_quantiles(draws[..., 1], logw, (0.05, 0.95))
    holes = hidden[:, 1]
    inside = (rows[holes, 1] >= low[holes]) & (rows[holes, 1] <= high[holes])
    assert abs(inside.mean() - 0.9) < 0.04
    plain_low, plain_high = draw_quantiles(torch.from_numpy(draws[..., 1]), (0.05, 0.95)).numpy()
    assert (low[holes] >= plain_low[holes] - 1e-12).all() and (high[holes] >= plain_high[holes] - 1e-12).all()


def trivariate_rows(n, own, seed, rho=0.5, draws=50):
    """Rows of a trivariate normal (every correlation rho): column 0 always observed, column 1
    hidden with probability sigmoid(2 x0 - 1.4) (missing at random, on the observed column),
    column 2 with probability sigmoid(own x2 - 1.4) (self-masked for own != 0); and exact
    joint draws of each row's holes from the normal's conditional given its observed cells."""
    rng = np.random.default_rng(seed)
    cov = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    rows = rng.multivariate_normal(np.zeros(3), cov, size=n)
    hidden = np.zeros((n, 3), dtype=bool)
    hidden[:, 1] = rng.random(n) < sigmoid(2 * rows[:, 0] - 1.4)
    hidden[:, 2] = rng.random(n) < sigmoid(own * rows[:, 2] - 1.4)
    out = np.repeat(rows[None], draws, 0)
    for pattern in {tuple(h) for h in hidden}:
        which = (hidden == pattern).all(1)
        miss, seen = np.array(pattern), ~np.array(pattern)
        if not miss.any():
            continue
        gain = cov[np.ix_(miss, seen)] @ np.linalg.inv(cov[np.ix_(seen, seen)])
        spread = np.linalg.cholesky(cov[np.ix_(miss, miss)] - gain @ cov[np.ix_(seen, miss)])
        mean = rows[which][:, seen] @ gain.T                                        # [R, H]
        noise = rng.normal(size=(draws, which.sum(), miss.sum())) @ spread.T
        block = out[:, which]
        block[:, :, miss] = mean[None] + noise
        out[:, which] = block
    return rows, hidden, out


def newton_logistic(design, target, steps=50):
    """Plain logistic regression by Newton's method: coefficients and their standard errors
    from the inverse Fisher information (X' W X)^-1, the textbook closed form."""
    theta = np.zeros(design.shape[1])
    for _ in range(steps):
        p = sigmoid(design @ theta)
        information = design.T @ (design * (p * (1 - p))[:, None])
        theta += np.linalg.solve(information, design.T @ (target - p))
    p = sigmoid(design @ theta)
    return theta, np.sqrt(np.diag(np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))))


def test_the_conditioned_mechanism_is_a_logistic_regression_where_the_hidden_values_are_known():
    # Draws that all equal the truth (a model that knows the hidden values): each cell's
    # likelihood is then a plain logistic regression of its hole on its own value and the
    # always-observed column 0, which Newton's method solves; the fit and its standard error
    # must agree with it up to the optimiser's tolerance (L-BFGS stops at a gradient of 1e-9
    # per row, or a change of the loss per row below 1e-14: with the information per row
    # above 0.01 in every direction here, the coefficients are within sqrt(2e-14 / 0.01) ~
    # 1e-6, asserted to 1e-4; the standard error, a smooth function of them, within 1e-3
    # relative). Column 1 and 2, which have holes, are no covariates of each other.
    rows, hidden, _ = trivariate_rows(800, 2.0, seed=3)
    known = np.repeat(rows[None], 3, 0)
    columns, covariates = np.array([False, True, True]), np.ones(3, dtype=bool)
    a, b, weights, se = fit_conditioned(known, hidden, columns, covariates)
    assert a[0] == b[0] == 0 and np.isnan(se[0]) and not weights[0].any()
    for j in (1, 2):
        design = np.column_stack([rows[:, j], rows[:, 0], np.ones(len(rows))])
        theta, errors = newton_logistic(design, hidden[:, j].astype(float))
        assert a[j] == pytest.approx(theta[0], abs=1e-4) and b[j] == pytest.approx(theta[-1], abs=1e-4)
        assert weights[j, 0] == pytest.approx(theta[1], abs=1e-4) and se[j] == pytest.approx(errors[0], rel=1e-3)
        assert weights[j, 1:].tolist() == [0.0, 0.0]
    # and the slopes are those of the simulation (800 rows: standard errors near 0.15-0.25)
    assert abs(a[1]) < 4 * se[1] and abs(a[2] - 2.0) < 4 * se[2]
    assert weights[1, 0] == pytest.approx(2.0, abs=4 * 0.25)


def test_missing_at_random_is_not_taken_for_self_masking_and_self_masking_is_found():
    # Column 1's holes follow the always-observed column 0 (MAR), column 2's its own value
    # (slope 2) or not at all (MCAR); draws exact. The conditioned slope of column 1 is 0 in truth, so
    # its Wald statistic is chi-squared(1): over 20 seeded replications of 250 rows its mean
    # is within 4 SE (4 sqrt(2 / 20) = 1.26) of 1 and at most 0.05 + 4 x 0.049 of them, i.e.
    # 4, exceed the 5% point. The slope without covariates (self-masking alone) is not 0 under MAR:
    # its statistic rejects in most of 5 replications (the reason for conditioning).
    conditioned, alone, found = [], [], []
    columns, covariates = np.array([False, True, True]), np.ones(3, dtype=bool)
    for seed in range(20):
        rows, hidden, draws = trivariate_rows(250, 0.0, seed)
        a, _, _, se = fit_conditioned(draws, hidden, columns, covariates)
        conditioned.append(wald(a, se)[1:])
        if seed < 5:
            a, _, _, se = fit_conditioned(draws, hidden, np.array([False, True, False]))
            alone.append(wald(a, se)[1])
    conditioned, alone = np.array(conditioned), np.array(alone)
    for column in (0, 1):                        # MAR column 1, MCAR column 2
        assert abs(conditioned[:, column].mean() - 1) < 1.26
        assert (conditioned[:, column] > 3.841).sum() <= 4
    assert (alone > 3.841).mean() > 0.5
    # self-masked column 2 (slope 2 per SD, correlation 0.5 with column 0: the part of x2
    # that column 0 does not predict has SD 0.87, and the statistic's mean is about 20, so
    # staying below Bonferroni's 1% / 2 point, 7.9, is a rare event): every one of 5
    # replications declares column 2 and only it
    for seed in range(5):
        rows, hidden, draws = trivariate_rows(250, 2.0, 100 + seed)
        a, _, _, se = fit_conditioned(draws, hidden, columns, covariates)
        found.append(list(self_masked_columns(wald(a, se), columns, 0.01)))
    assert found == [[False, False, True]] * 5


def test_offsets_shift_each_cell_like_its_own_intercept():
    # log_weights' offset is a per-cell addition to the logit: a constant offset per column
    # is the same as that much more intercept
    rng = np.random.default_rng(0)
    draws, hidden = rng.normal(size=(20, 6, 3)), rng.random((6, 3)) < 0.5
    a, b, shift = np.array([1.0, -2.0, 0.5]), np.array([0.1, 0.2, -0.3]), np.array([0.7, -1.1, 0.4])
    assert np.allclose(log_weights(draws, hidden, a, b, np.tile(shift, (6, 1))),
                       log_weights(draws, hidden, a, b + shift), rtol=0, atol=1e-12)


def test_holm_declares_what_bonferroni_does_and_more_among_fewer():
    # chi-squared(1) p-values: statistic 20 -> 7.7e-6, 9.0 -> 0.0027, 8.0 -> 0.0047,
    # 5.0 -> 0.025. Holm at 1% over four columns: 7.7e-6 < 0.01/4 (declared), 0.0027 <
    # 0.01/3 (declared), 0.0047 < 0.01/2 (declared), 0.025 < 0.01 fails. Bonferroni (each
    # against 0.0025) declares only the first.
    statistic = np.array([9.0, 20.0, 8.0, 5.0, 50.0])
    tested = np.array([True, True, True, True, False])
    assert list(self_masked_columns(statistic, tested, 0.01)) == [True, True, True, False, False]
    # the smallest p-value failing its bound stops the procedure, even where the next would
    # pass its own: 7.5 -> 0.0062 against 0.01/2 fails, 7.0 -> 0.0082 < 0.01 is not reached
    assert list(self_masked_columns(np.array([7.5, 7.0]), np.array([True, True]), 0.01)) == [False, False]
    assert list(self_masked_columns(np.array([8.0, 7.0]), np.array([True, True]), 0.01)) == [True, True]


def test_the_clustered_standard_error_is_the_slopes_spread_over_replications_of_masked_copies():
    # 150 rows in 4 copies, each copy's column-2 holes drawn afresh (MCAR, 20%), exact joint
    # draws: the copies share their values, so the slope varies between replications more
    # than the observed information of 600 rows says. Over 40 replications the clustered
    # standard error's mean must match the slopes' standard deviation: the SD's own
    # sampling error is about 1 / sqrt(2 x 39) = 11% of it, so 35% apart is a 3-SD event
    # (the sandwich is itself biased low by a few percent with 150 clusters).
    slopes, clustered, plain = [], [], []
    columns, covariates = np.array([False, False, True]), np.ones(3, dtype=bool)
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        rows, _, _ = trivariate_rows(150, 0.0, seed, draws=1)
        rows = np.tile(rows, (4, 1))
        hidden = np.zeros(rows.shape, dtype=bool)
        hidden[:, 2] = rng.random(len(rows)) < 0.2
        draws = np.repeat(rows[None], 20, 0)
        # exact conditional of x2 given x0, x1 (all correlations 0.5): mean (x0 + x1) / 3, variance 2/3
        draws[:, hidden[:, 2], 2] = ((rows[hidden[:, 2], 0] + rows[hidden[:, 2], 1]) / 3
                                     + np.sqrt(2 / 3) * rng.normal(size=(20, hidden[:, 2].sum())))
        clusters = np.arange(len(rows)) % 150
        a, _, _, se = fit_conditioned(draws, hidden, columns, covariates, clusters=clusters)
        _, _, _, se_plain = fit_conditioned(draws, hidden, columns, covariates)
        slopes.append(a[2]), clustered.append(se[2]), plain.append(se_plain[2])
    spread = np.std(slopes, ddof=1)
    assert abs(np.mean(clustered) / spread - 1) < 0.35
    # and the observed information of the 600 rows, as if they were independent, understates
    # it (by about half here: the copies' holes fall on the same values)
    assert np.mean(plain) < 0.75 * spread


def zero_inflated_rows(n, self_masked, seed, draws=50):
    """Column 0 standard normal, always observed; column 1 exactly 0 with probability
    sigmoid(-1 - x0), else 1 + |N(0.5 x0, 1)| (a point mass and a continuous part, like
    fair's affairs); column 1 hidden at random (20%) or, self-masked, wherever it is not 0
    (and 2% of the zeros). Exact draws of the hidden cells from column 1's conditional
    given x0."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    zero = lambda size: rng.random(size) < sigmoid(-1 - x0)       # noqa: E731
    positive = lambda size: 1 + np.abs(0.5 * x0 + rng.normal(size=size))      # noqa: E731
    x1 = np.where(zero(n), 0.0, positive(n))
    rows = np.stack([x0, x1], 1)
    hidden = np.zeros((n, 2), dtype=bool)
    hidden[:, 1] = ((x1 > 0) | (rng.random(n) < 0.02)) if self_masked else rng.random(n) < 0.2
    out = np.repeat(rows[None], draws, 0)
    out[:, :, 1] = np.where(zero((draws, n)), 0.0, positive((draws, n)))
    out[:, ~hidden[:, 1], 1] = x1[~hidden[:, 1]]
    return rows, hidden, out


def test_the_score_test_is_chi_squared_at_random_and_finds_self_masking_that_separates():
    # The score test needs only the fit under the null; under it (holes at random in the
    # zero-inflated column, slope 0 known) the statistic is chi-squared(1): over 30
    # replications of 250 rows its mean is within 4 SE (4 sqrt(2 / 30) = 1.03) of 1 and at
    # most 0.05 x 30 + 4 sqrt(0.05 x 0.95 x 30), i.e. 6, exceed the 5% point. Where the
    # full fit exists, its Wald statistic is the same quantity to first order: over the
    # replications the two are strongly correlated (0.96 when written; asserted above 0.8).
    columns, covariates = np.array([False, True]), np.ones(2, dtype=bool)
    zero = np.zeros(2)
    null, wald_statistics = [], []
    for seed in range(30):
        _, hidden, draws = zero_inflated_rows(250, False, seed)
        null.append(score_against(draws, hidden, columns, covariates, zero, zero)[1])
        a, _, _, se = fit_conditioned(draws, hidden, columns, covariates)
        wald_statistics.append(wald(a, se)[1])
    null = np.array(null)
    assert abs(null.mean() - 1) < 1.03 and (null > 3.841).sum() <= 6
    assert np.corrcoef(null, wald_statistics)[0, 1] > 0.8
    # Self-masking that hides every nonzero value: the observed cells are 0 and most of the
    # draws of the hidden ones are not, so the full fit has no finite maximum (no standard
    # error) and the Wald test cannot speak; the score statistic is far beyond Bonferroni's
    # 1% point in each of 3 replications (90-150 when written: the draws' nonzero values are
    # hidden with probability about 1 against about 0.02 for the zeros).
    for seed in range(3):
        _, hidden, draws = zero_inflated_rows(250, True, 100 + seed)
        _, _, _, se = fit_conditioned(draws, hidden, columns, covariates)
        assert np.isnan(se[1])
        statistic = score_against(draws, hidden, columns, covariates, zero, zero)
        assert statistic[0] == 0 and statistic[1] > 6.63


def test_draws_below_the_columns_least_value_make_the_fit_separable_and_clipping_them_does_not():
    # A model that blurs the point mass at 0 (the zeros of the hidden cells drawn as
    # N(-1, 0.3^2), nearly all below 0, as a mixture of Gaussians can) under holes completely
    # at random: no observed cell is ever below 0, so a slope towards -infinity (every draw
    # below 0 hidden) raises the likelihood without bound: no finite maximum, no standard
    # error. Clipped to the column's range [0, max], those draws sit on 0 with the observed
    # zeros, and the fit is finite (the imputer clips to each column's range in `fit` before
    # fitting the held-out reference and the rows to fill). 3 replications.
    columns, covariates = np.array([False, True]), np.ones(2, dtype=bool)
    for seed in range(3):
        rows, hidden, draws = zero_inflated_rows(250, False, 201 + seed)
        rng = np.random.default_rng(seed)
        blurred = draws.copy()
        blurred[:, :, 1] = np.where((blurred[:, :, 1] == 0) & hidden[None, :, 1],
                                    -1 + 0.3 * rng.normal(size=blurred.shape[:2]), blurred[:, :, 1])
        _, _, _, se = fit_conditioned(blurred, hidden, columns, covariates)
        assert np.isnan(se[1])
        clipped = blurred.copy()
        clipped[:, :, 1] = np.clip(clipped[:, :, 1], 0.0, rows[:, 1].max())
        _, _, _, se = fit_conditioned(clipped, hidden, columns, covariates)
        assert np.isfinite(se[1])


def test_self_masked_columns_fitted_together_recover_the_slope_that_each_alone_flattens():
    # Both columns of a standard bivariate normal (correlation 0.8) self-masked at slope 2
    # (intercept -1.8: a quarter of each hidden), with exact draws of the complete-data
    # conditionals given each row's observed cells (both hidden: the joint; one: its
    # conditional on the other), as a model of complete rows gives. Alone, a column's fit
    # draws its holes from N(0.8 x_other, 0.36) or N(0, 1) though where the other cell is
    # hidden too that one is likely large, and so this one: its slope comes out flat (1.28-1.69
    # on four seeds, its SE 0.11-0.13). Fitted together (`fit_jointly`), a row's holes are
    # weighted as one: the slope's error at most 0.45, about four SE, and below the alone fit's.
    rng = np.random.default_rng(1)
    n, m, rho = 2000, 100, 0.8
    x = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    hidden = rng.random((n, 2)) < sigmoid(2.0 * x - 1.8)
    draws = np.repeat(x[None], m, 0)
    both = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(m, n))
    for j in (0, 1):
        alone = rho * x[:, 1 - j] + np.sqrt(1 - rho ** 2) * rng.normal(size=(m, n))
        draws[:, :, j] = np.where(hidden[:, j], np.where(hidden[:, 1 - j], both[..., j], alone), x[:, j])
    columns, none = np.array([True, True]), np.array([False, False])
    a, b, weights, _ = fit_conditioned(draws, hidden, columns)
    joint, joint_b, _ = fit_jointly(draws, hidden, columns, none, a, b, weights)
    assert np.all(np.abs(joint - 2.0) < np.abs(a - 2.0)) and np.all(np.abs(joint - 2.0) < 0.45)
    assert np.all(a < 1.75)
    # one column alone has no other holes to weigh its draws by: its fit stays the alone fit
    one, _, _ = fit_jointly(draws, hidden, np.array([True, False]), none, a * [1, 0], b * [1, 0], weights)
    assert abs(one[0] - a[0]) < 1e-6 and one[1] == 0
