"""The Gaussian blend of the imputer's fills: the conditional mean against the textbook formula
row by row, moments with holes against a loop over pairs of columns, the blend weight against
its closed form, and the imputer's blended fill against g + w (a - g) computed by hand."""

import numpy as np
import pytest
import torch

from anyorder.gaussian_blend import RIDGE, GaussianFill, blend_weights


def test_the_fill_is_the_conditional_mean_of_each_row_given_its_observed_numeric_cells():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    covariance, mean = a @ a.T + np.eye(5), rng.normal(size=5)
    numeric = np.array([True, True, False, True, True, True])       # column 2: categorical, ignored
    gaussian = GaussianFill(mean, covariance, numeric)              # moments of the numeric columns
    x = rng.multivariate_normal(mean, covariance, size=60)
    hidden = rng.random(x.shape) < 0.4
    hidden[0] = True                                                # a row with nothing observed
    rows = np.insert(np.where(hidden, np.nan, x), 2, np.nan, axis=1)  # the categorical column: missing
    filled = gaussian.fill(rows)
    assert np.isnan(filled[:, 2]).all()                              # left to the network
    got = np.delete(filled, 2, axis=1)
    for i in range(len(x)):
        h, o = hidden[i], ~hidden[i]
        want = mean[h] + covariance[np.ix_(h, o)] @ np.linalg.solve(covariance[np.ix_(o, o)], x[i, o] - mean[o])
        assert np.allclose(got[i, h], want, rtol=1e-10, atol=1e-10)
        assert np.array_equal(got[i, o], x[i, o])                    # observed cells as given


def test_moments_with_holes_are_the_pairwise_complete_ones():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    x[rng.random(x.shape) < 0.2] = np.nan
    fitted = GaussianFill.fit(x, np.ones(3, bool))
    mean = np.nanmean(x, 0)
    for j in range(3):
        for k in range(3):
            both = ~np.isnan(x[:, j]) & ~np.isnan(x[:, k])
            want = ((x[both, j] - mean[j]) * (x[both, k] - mean[k])).sum() / (both.sum() - 1)
            # positive definite already, so the eigenvalue floor leaves it; the ridge is added
            assert fitted.covariance[j, k] == pytest.approx(want + RIDGE * (j == k), rel=1e-9, abs=1e-12)
    assert np.allclose(fitted.mean, mean)


def test_the_blend_weight_is_the_least_squares_one_clipped_to_the_unit_interval():
    rng = np.random.default_rng(2)
    network, gaussian = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    truth = gaussian + np.array([0.3, 1.0, 0.0, 2.0]) * (network - gaussian)
    hidden = np.ones((50, 4), bool)
    hidden[:, 3] = False                                            # no hidden cell: the network alone
    truth[:, 3] = 0.0
    assert np.allclose(blend_weights(truth, network, gaussian, hidden), [0.3, 1.0, 0.0, 1.0])
    beyond = gaussian + 1.7 * (network - gaussian)                   # past the network: clipped to 1
    assert blend_weights(beyond, network, gaussian, np.ones((50, 4), bool))[0] == 1.0


def test_the_imputer_blends_numeric_holes_as_measured_and_keeps_everything_else():
    pytest.importorskip("sklearn")
    from anyorder import AnyOrderImputer
    rng = np.random.default_rng(3)
    z = rng.normal(size=300)
    X = np.stack([z, 2 * z + 0.1 * rng.normal(size=300), rng.normal(size=300)], 1)
    given = np.where(rng.random(X.shape) < 0.25, np.nan, X)
    given[np.isnan(given).all(1), 0] = X[np.isnan(given).all(1), 0]
    imputer = AnyOrderImputer(max_steps=30, width=16, depth=1, components=2, blend="gaussian",
                               random_state=0).fit(given)
    assert imputer.blend_weights_.shape == (3,) and ((0 <= imputer.blend_weights_) & (imputer.blend_weights_ <= 1)).all()
    blended = imputer.transform(given)
    network = imputer.set_params(blend="none").transform(given)
    imputer.set_params(blend="gaussian")
    query = imputer._query(given).double().numpy()
    gaussian = imputer._file_units(torch.from_numpy(imputer.gaussian_.fill(query)))
    holes = np.isnan(given)
    want = gaussian + imputer.blend_weights_ * (network - gaussian)
    assert np.allclose(blended[holes], want[holes], rtol=1e-6, atol=1e-6)
    assert np.array_equal(blended[~holes], given[~holes])
