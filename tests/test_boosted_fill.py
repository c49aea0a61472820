"""The boosted-tree candidate of the imputer's stacked fill: its numpy walk of the trees against
scikit-learn's own predictions (missing values included), its save / load, the significance gate
of the Gaussian's weight against its formula, and the imputer's stacked fill against
g + w (mean of the three estimates - g) computed by hand."""

import numpy as np
import pytest
import torch

from anyorder.gaussian_blend import GAIN_SE, blend_weights, significant_weights

pytest.importorskip("sklearn")


def _table(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    x[:, 0] = np.sin(2 * x[:, 1]) + x[:, 2] ** 2 + 0.1 * rng.normal(size=rows)
    return x, rng


def test_the_trees_predict_what_scikit_learn_predicts_with_holes_anywhere():
    from sklearn.ensemble import HistGradientBoostingRegressor
    from anyorder.boosted_fill import BoostedFill, tree_arrays
    x, rng = _table()
    features = np.where(rng.random((len(x), 3)) < 0.3, np.nan, x[:, 1:])
    model = HistGradientBoostingRegressor(max_iter=40, early_stopping=False, random_state=0).fit(features, x[:, 0])
    baseline, trees = tree_arrays(model)
    fill = BoostedFill(np.array([True, False, False, False]), np.array([baseline, 0, 0, 0]), [trees, None, None, None])
    query = np.where(rng.random(x.shape) < 0.4, np.nan, x)         # fresh holes, some rows with none observed
    query[:5, 1:] = np.nan
    want = model.predict(query[:, 1:])
    # the same leaf values summed in another order: float64 rounding of 40 terms
    assert np.allclose(fill.predict(query, 0), want, rtol=1e-12, atol=1e-12)
    filled = fill.fill(query)
    holes = np.isnan(query[:, 0])
    assert np.allclose(filled[holes, 0], want[holes], rtol=1e-12, atol=1e-12)
    assert np.array_equal(filled[~holes, 0], query[~holes, 0])
    assert np.array_equal(np.isnan(filled[:, 1:]), np.isnan(query[:, 1:]))      # no trees: left as given


def test_a_scikit_learn_without_the_private_tree_attributes_is_a_one_line_error():
    # the trees are read from private attributes (no public way exists): a scikit-learn that
    # renames the attribute or a field of the tree records gives a UserError naming the blend
    from numpy.lib import recfunctions
    from sklearn.ensemble import HistGradientBoostingRegressor
    from anyorder.boosted_fill import tree_arrays
    from anyorder.errors import UserError
    x, _ = _table(rows=100)
    model = HistGradientBoostingRegressor(max_iter=3, early_stopping=False, random_state=0).fit(x[:, 1:], x[:, 0])
    tree = model._predictors[0][0]
    tree.nodes = recfunctions.rename_fields(tree.nodes, {"feature_idx": "feature_index"})
    with pytest.raises(UserError, match='blend="stack" .* scikit-learn 1.6-1.9 that .* lacks') as caught:
        tree_arrays(model)
    assert "\n" not in str(caught.value)
    del model._predictors
    with pytest.raises(UserError, match='use blend="gaussian"'):
        tree_arrays(model)


def test_fitted_trees_fill_every_numeric_hole_and_survive_save_and_load(tmp_path):
    from anyorder.boosted_fill import BoostedFill
    x, rng = _table()
    x[:, 3] = rng.integers(0, 3, len(x))                                # a categorical column: a classifier
    numeric = np.array([True, True, True, False])
    fill = BoostedFill.fit(np.where(rng.random(x.shape) < 0.1, np.nan, x), numeric, rate=0.2, seed=0)
    assert list(fill.trees[3]["classes"]) == [0, 1, 2]
    query = np.where(rng.random(x.shape) < 0.3, np.nan, x)
    filled = fill.fill(query)
    assert not np.isnan(filled[:, numeric]).any()
    assert np.array_equal(np.isnan(filled[:, 3]), np.isnan(query[:, 3]))      # fill leaves categorical cells
    # column 0 is a function of columns 1, 2: the trees beat its mean by far where both are seen
    seen = np.isnan(query[:, 0]) & ~np.isnan(query[:, 1:3]).any(1)
    assert np.mean((filled[seen, 0] - x[seen, 0]) ** 2) < 0.5 * np.var(x[:, 0])
    fill.save(tmp_path / "trees.safetensors")
    again = BoostedFill.load(tmp_path / "trees.safetensors")
    assert np.array_equal(again.fill(query), filled, equal_nan=True)


def test_the_gaussian_keeps_its_weight_only_where_its_held_out_gain_is_significant():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(200, 3))
    network = truth + rng.normal(size=(200, 3))
    gaussian = np.stack([truth[:, 0] + 0.1 * rng.normal(size=200),       # far better: kept
                         truth[:, 1] + rng.normal(size=200),             # as good: gain is noise
                         network[:, 2] + 0.01 * rng.normal(size=200)], 1)  # the same: gain ~0
    hidden = rng.random((200, 3)) < 0.6
    weights = blend_weights(truth, network, gaussian, hidden)
    got = significant_weights(truth, network, gaussian, hidden, weights)
    for j in range(3):          # the rule, cell by cell
        h = hidden[:, j]
        blend = gaussian[h, j] + weights[j] * (network[h, j] - gaussian[h, j])
        gain = (network[h, j] - truth[h, j]) ** 2 - (blend - truth[h, j]) ** 2
        keep = gain.mean() > GAIN_SE * gain.std(ddof=1) / np.sqrt(h.sum())
        assert got[j] == (weights[j] if keep else 1.0)
    assert got[0] == weights[0] < 0.1 and got[2] == 1.0


def test_the_stacked_fill_is_the_gaussian_blend_of_the_mean_of_the_three_estimates(tmp_path):
    from anyorder import AnyOrderImputer
    from anyorder.impute import impute
    rng = np.random.default_rng(3)
    z = rng.normal(size=300)
    X = np.stack([z, 2 * z + 0.1 * rng.normal(size=300), rng.normal(size=300), np.sin(3 * z)], 1)
    given = np.where(rng.random(X.shape) < 0.25, np.nan, X)
    given[np.isnan(given).all(1), 0] = X[np.isnan(given).all(1), 0]
    imputer = AnyOrderImputer(max_steps=40, width=16, depth=1, components=2, blend="stack", random_state=0).fit(given)
    assert imputer.blend == "stack" and imputer.trees_ is not None
    assert imputer.draws_model_ is not imputer.model_          # two sets of weights: three estimates
    stacked = imputer.transform(given)
    query = imputer._query(given)
    network = impute(imputer.model_, query, reduce="conditional-mean").double().numpy()
    best = impute(imputer.draws_model_, query, reduce="conditional-mean").double().numpy()
    trees = imputer.trees_.fill(query.double().numpy())
    gaussian = imputer.gaussian_.fill(query.double().numpy())
    mean = (network + best + trees) / 3
    want = imputer._file_units(torch.from_numpy(gaussian + imputer.stack_weights_ * (mean - gaussian)))
    holes = np.isnan(given)
    assert np.allclose(stacked[holes], want[holes], rtol=1e-6, atol=1e-6)
    assert np.array_equal(stacked[~holes], given[~holes])
    imputer.save(tmp_path / "imputer")
    assert np.array_equal(AnyOrderImputer.load(tmp_path / "imputer").transform(given), stacked)


def test_the_default_blend_stacks_from_a_thousand_rows_and_blends_the_gaussian_below(tmp_path):
    """blend="auto" prepares the stack (trees grown, stack weights) on a table of STACK_ROWS rows
    and the Gaussian blend on one a row short; its fills are those of the blend it chose
    (the same fit with that blend set explicitly), and a saved imputer keeps the choice."""
    from anyorder import AnyOrderImputer
    from anyorder.imputer import STACK_ROWS
    rng = np.random.default_rng(4)
    z = rng.normal(size=STACK_ROWS)
    X = np.stack([z, z + 0.3 * rng.normal(size=STACK_ROWS), np.cos(2 * z)], 1)
    given = np.where(rng.random(X.shape) < 0.2, np.nan, X)
    given[np.isnan(given).all(1), 0] = X[np.isnan(given).all(1), 0]
    tiny = dict(max_steps=10, width=8, depth=1, components=2, missingness="random", random_state=0)
    for rows, chosen in ((STACK_ROWS, "stack"), (STACK_ROWS - 1, "gaussian")):
        imputer = AnyOrderImputer(**tiny).fit(given[:rows])
        assert imputer.blend == "auto" and imputer.blend_ == chosen
        assert (imputer.trees_ is not None) == (chosen == "stack")
        filled = imputer.transform(given[:rows])
        assert np.array_equal(imputer.set_params(blend=chosen).transform(given[:rows]), filled)
        imputer.set_params(blend="auto").save(tmp_path / chosen)
        loaded = AnyOrderImputer.load(tmp_path / chosen)
        assert loaded.blend_ == chosen and np.array_equal(loaded.transform(given[:rows]), filled)
    assert not np.array_equal(imputer.set_params(blend="none").transform(given[:rows]), filled)


@pytest.mark.parametrize("classes", [2, 4])
def test_the_classifier_trees_give_scikit_learns_probabilities_with_holes_anywhere(tmp_path, classes):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from anyorder.boosted_fill import BoostedFill, classifier_arrays
    x, rng = _table(rows=500)
    y = np.clip(np.round(x[:, 1] + x[:, 2] + 0.5 * rng.normal(size=len(x))) + 1, 0, classes - 1)
    features = np.where(rng.random((len(x), 3)) < 0.3, np.nan, x[:, 1:])
    model = HistGradientBoostingClassifier(max_iter=20, early_stopping=False, random_state=0).fit(features, y.astype(int))
    fill = BoostedFill(np.array([False, True, True, True]), np.zeros(4), [classifier_arrays(model), None, None, None])
    query = np.hstack([np.full((len(x), 1), np.nan), np.where(rng.random((len(x), 3)) < 0.4, np.nan, x[:, 1:])])
    want = np.zeros((len(x), classes + 1))              # one level more than the classifier saw: probability 0
    want[:, model.classes_] = model.predict_proba(query[:, 1:])
    assert np.allclose(fill.probabilities(query, 0, classes + 1), want, rtol=0, atol=1e-12)
    fill.save(tmp_path / "trees.safetensors")
    loaded = BoostedFill.load(tmp_path / "trees.safetensors")
    assert np.array_equal(loaded.probabilities(query, 0, classes + 1), fill.probabilities(query, 0, classes + 1))
    assert fill.probabilities(query, 1, 3) is None


def test_the_stacked_level_is_the_most_likely_of_the_mean_of_the_three_class_probabilities():
    """A categorical hole under blend="stack": the argmax of the mean of the network's softmax
    (last and best-held-out weights, read off the head's logits in one pass) and the trees'
    classifier's probabilities; each network's one-step conditionals sum to 1 over the levels."""
    from anyorder import AnyOrderImputer
    rng = np.random.default_rng(5)
    z = rng.normal(size=400)
    level = np.digitize(z + 0.5 * rng.normal(size=400), [-0.7, 0.0, 0.7])          # 4 levels, ordered by z
    X = np.stack([z, z + 0.3 * rng.normal(size=400), level.astype(float)], 1)
    given = np.where(rng.random(X.shape) < 0.25, np.nan, X)
    given[np.isnan(given).all(1), 0] = X[np.isnan(given).all(1), 0]
    imputer = AnyOrderImputer(max_steps=40, width=16, depth=1, components=2, blend="stack", categorical=[2],
                              missingness="random", random_state=0).fit(given)
    assert imputer.draws_model_ is not imputer.model_
    filled = imputer.transform(given)
    query = imputer._query(given)
    holes = torch.isnan(query[:, 2])
    observed = ~torch.isnan(query)
    x = torch.where(observed, query, 0.0)
    estimates = []
    for model in (imputer.model_, imputer.draws_model_):
        with torch.no_grad():
            params = model(x, observed)
        logits = model.head._logits(params, model.head._sizes(params[..., 0], None))
        softmax = torch.softmax(logits, -1)[holes, 2].double().numpy()
        one_step = imputer._level_probabilities(model, query[holes], 2, 4)
        assert np.allclose(one_step, softmax, atol=1e-5) and np.allclose(one_step.sum(1), 1, atol=1e-5)
        estimates.append(softmax)
    estimates.append(imputer.trees_.probabilities(query[holes].double().numpy(), 2, 4))
    want = np.mean(estimates, 0).argmax(1)
    got = imputer._model_units(filled)[holes.numpy(), 2]
    assert np.array_equal(got, want)
    assert np.array_equal(filled[~np.isnan(given)], given[~np.isnan(given)])
    assert set(np.unique(filled[:, 2])) <= {0.0, 1.0, 2.0, 3.0}
