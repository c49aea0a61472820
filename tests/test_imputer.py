"""anyorder.AnyOrderImputer: the scikit-learn contract, DataFrames in and out, exact observed
cells, pipelines, saving, rows with nothing observed, bounds, and interval coverage against
a known distribution. Tiny tables and a few training steps keep each test to seconds."""

import json
import math
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from anyorder import AnyOrderImputer, checkpoint  # noqa: E402
from anyorder.errors import UserError  # noqa: E402
from anyorder.self_masking import against_reference, fit_conditioned, self_masked_columns  # noqa: E402

TINY = dict(max_steps=30, width=16, depth=1, components=2, random_state=0)


def numeric_table(n=150, seed=0, rate=0.25):
    """A correlated numeric table with a column that is never negative, and its holes."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    x = np.stack([a * 3 + 317.6, a + rng.normal(size=n) * 0.3, np.abs(rng.normal(size=n)) * 2 + 0.01], 1)
    x = np.round(x, 3) + 1 / 3          # values with many significant bits
    holes = rng.random(x.shape) < rate
    return np.where(holes, np.nan, x), holes


def test_importing_anyorder_imports_neither_pandas_nor_sklearn():
    code = "import sys, anyorder; print('pandas' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_scikit_learn_check_estimator_passes():
    results = check_estimator(AnyOrderImputer(max_steps=3, width=8, depth=1, components=1, random_state=0,
                                              reduce="mean", num_samples=2), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed
    assert len(results) > 30


def test_array_api_checks_pass_for_numpy_and_torch():
    """scikit-learn's `check_array_api_input` runs only when SCIPY_ARRAY_API is set before
    scipy is imported, hence a fresh interpreter: numpy, and torch (CPU) in float32 and
    float64 with the values compared with numpy's (check_estimator runs these same checks
    there, and array-api-strict's and CuPy's where installed)."""
    code = ("from sklearn.utils.estimator_checks import check_array_api_input as check\n"
            "from anyorder import AnyOrderImputer\n"
            "e = AnyOrderImputer(max_steps=3, width=8, depth=1, components=1, random_state=0)\n"
            "check('e', e, array_namespace='numpy', expect_only_array_outputs=False)\n"
            "for dtype in ('float32', 'float64'):\n"
            "    check('e', e, array_namespace='torch', device_name='cpu', dtype_name=dtype, check_values=True)\n"
            "print('passed')")
    env = {**__import__("os").environ, "SCIPY_ARRAY_API": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "passed", out.stderr[-2000:]


def test_torch_tensors_come_back_as_tensors_of_their_dtype():
    X, holes = numeric_table()
    for dtype in (torch.float64, torch.float32):
        given = torch.from_numpy(X).to(dtype)
        out = AnyOrderImputer(**TINY).fit(given).transform(given)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == given.shape
        assert torch.equal(out[~torch.from_numpy(holes)], given[~torch.from_numpy(holes)])
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("reduce", ["conditional-mean", "mean", "sample"])
def test_arrays_come_back_as_arrays_with_observed_cells_bit_identical(reduce):
    X, holes = numeric_table()
    for dtype in (np.float64, np.float32):
        given = X.astype(dtype)
        out = AnyOrderImputer(**TINY, reduce=reduce, num_samples=3).fit(given).transform(given)
        assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == X.shape
        assert np.array_equal(out[~holes].view(np.uint8), given[~holes].view(np.uint8))
        assert np.isfinite(out).all()


def test_dataframe_dtypes_round_trip_and_observed_cells_are_kept():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame({
        "price": rng.normal(size=n).round(1) * 10 + 317.6,
        "small": rng.normal(size=n).astype(np.float32),
        "count": pd.array(rng.integers(0, 50, size=n), dtype="Int64"),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], size=n)),
        "city": rng.choice(["Oslo", "Lima"], size=n).astype(object),
        "flag": pd.array(rng.random(n) < 0.5, dtype="boolean"),
    }, index=pd.RangeIndex(100, 100 + n))
    holes = rng.random(frame.shape) < 0.2
    given = frame.copy()
    for j, column in enumerate(given.columns):
        given.loc[holes[:, j], column] = None
    out = AnyOrderImputer(**TINY).fit_transform(given)
    assert list(out.dtypes) == list(frame.dtypes) and out.index.equals(frame.index)
    assert not out.isna().any().any()
    for j, column in enumerate(frame.columns):
        kept = out[column][~holes[:, j]]
        assert kept.equals(given[column][~holes[:, j]]), column        # exactly as given, no float32 rounding
    assert set(out["colour"]) <= {"red", "green", "blue"} and set(out["city"]) <= {"Oslo", "Lima"}
    assert (out["count"] >= 0).all()


def test_numbers_held_as_text_are_filled_as_text():
    # fitted on numbers, asked to fill a frame read as text (pandas.read_csv(dtype="string")):
    # the column stays text, its observed cells as given, its fills the numbers' own as text
    pd = pytest.importorskip("pandas")
    X, _ = numeric_table(n=120, rate=0.2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    imputer = AnyOrderImputer(**TINY).fit(frame)
    text = frame.astype({"a": "string"})
    out = imputer.transform(text)
    assert out["a"].dtype == text["a"].dtype and not out["a"].isna().any()
    kept = frame["a"].notna()
    assert out["a"][kept].equals(text["a"][kept])
    assert np.allclose(out["a"].astype(float), imputer.transform(frame)["a"], rtol=0, atol=0)


def test_an_array_of_text_comes_back_as_objects_with_its_cells_kept():
    # rows as lists of numbers (NaN in the holes) and levels make a numpy array of text
    # ("nan" in the holes): its observed cells come back as the same text, fills as numbers
    pd = pytest.importorskip("pandas")
    X, _ = numeric_table(n=120, rate=0.2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(k=np.where(np.arange(120) % 3, "u", "v"))
    imputer = AnyOrderImputer(**TINY).fit(frame.to_numpy(dtype=object))
    text = np.array(frame.values.tolist())
    holes = np.isnan(X)
    assert text.dtype.kind == "U" and (text[:, :3][holes] == "nan").all()
    out = imputer.transform(text)
    assert out.dtype == object and (out[:, :3][~holes] == text[:, :3][~holes]).all() and (out[:, 3] == text[:, 3]).all()
    assert all(isinstance(v, float) and v == v for v in out[:, :3][holes])


def test_pipeline():
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    X, _ = numeric_table(n=100)
    y = np.nan_to_num(X[:, 0])
    pipe = make_pipeline(AnyOrderImputer(**TINY), LinearRegression()).fit(X, y)
    assert pipe.predict(X).shape == (100,)


def test_column_transformer_and_set_output():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    X, _ = numeric_table(n=100)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(k=np.where(np.arange(100) % 3, "u", "v"))
    frame.loc[::7, "k"] = None
    columns = ColumnTransformer([("numbers", AnyOrderImputer(**TINY), ["a", "b", "c"]),
                                 ("levels", make_pipeline(AnyOrderImputer(**TINY), OneHotEncoder()), ["k"])])
    assert columns.fit_transform(frame).shape == (100, 5)
    imputer = AnyOrderImputer(**TINY).set_output(transform="pandas")
    out = imputer.fit_transform(X)
    assert list(out.columns) == ["x0", "x1", "x2"] and list(imputer.get_feature_names_out()) == ["x0", "x1", "x2"]


def test_save_load_and_pickle_give_identical_transforms(tmp_path):
    X, _ = numeric_table(n=80)
    imputer = AnyOrderImputer(**TINY, reduce="mean", num_samples=4, validation_fraction=0.2).fit(X)   # 16 held out
    first = imputer.transform(X)
    assert np.array_equal(first, imputer.transform(X))          # same random_state: the same draws
    imputer.save(tmp_path / "imputer")
    loaded = AnyOrderImputer.load(tmp_path / "imputer")
    assert loaded.get_params() == imputer.get_params()
    assert np.array_equal(loaded.transform(X), first)
    assert np.array_equal(loaded.held_out_, imputer.held_out_, equal_nan=True) and len(imputer.held_out_) == 16
    assert np.array_equal(pickle.loads(pickle.dumps(imputer)).transform(X), first)
    draws = loaded.transform_draws(X, m=3)
    assert len(draws) == 3 and not np.array_equal(draws[0], draws[1])
    assert imputer.draws_model_ is not imputer.model_          # draws: the best held-out weights
    assert all(np.array_equal(a, b) for a, b in zip(draws, imputer.transform_draws(X, m=3)))
    # the held-out levels travel with the weights; an imputer saved before the two ends were
    # kept apart (one list per column) calibrates both ends with them, and one saved before
    # they were kept per column every column with the pooled levels
    assert imputer.levels_pit_ is not None and len(imputer.levels_pit_["upper"]) == 3
    random = dict(missingness="random")
    assert np.array_equal(np.stack(loaded.set_params(**random).quantiles(X, num_samples=20)),
                          np.stack(imputer.set_params(**random).quantiles(X, num_samples=20)))
    weights, config, meta, step = checkpoint.read(tmp_path / "imputer")
    upper = meta["imputer"]["levels_pit"]["upper"]
    meta["imputer"]["levels_pit"] = sorted(v for column in upper if column for v in column)
    meta["imputer"]["levels_pit_columns"] = upper
    checkpoint.save(tmp_path / "imputer", weights, config, meta, step)
    older = AnyOrderImputer.load(tmp_path / "imputer").set_params(**random)
    assert all(a is b for a, b in zip(older.levels_pit_["upper"], older.levels_pit_["lower"]))
    assert np.array_equal(np.stack(older.set_params(calibration="pooled").quantiles(X, num_samples=20)),
                          np.stack(imputer.set_params(calibration="pooled").quantiles(X, num_samples=20)))
    del meta["imputer"]["levels_pit_columns"], meta["imputer"]["held_out"]
    checkpoint.save(tmp_path / "imputer", weights, config, meta, step)
    oldest = AnyOrderImputer.load(tmp_path / "imputer").set_params(**random)
    assert oldest.held_out_ is None          # saved before the held-out rows were kept: the levels of `fit`
    pooled = np.asarray(meta["imputer"]["levels_pit"])
    for q in (0.05, 0.5, 0.95):     # each column's own levels are the pooled ones: the same quantile, up to
        gap = np.diff(pooled).max()     # where between two neighbouring levels each interpolates
        assert all(abs(oldest.calibrated_levels((q,), j)[0] - np.quantile(pooled, q)) <= gap for j in range(3))
    with pytest.raises(NotFittedError):
        AnyOrderImputer().calibrated_levels((0.05, 0.95))
    del meta["imputer"]         # a trained model's checkpoint, not an imputer's: one line, no traceback
    checkpoint.save(tmp_path / "plain", weights, config, meta, step)
    with pytest.raises(UserError, match="not one written by AnyOrderImputer.save"):
        AnyOrderImputer.load(tmp_path / "plain")


def test_rows_with_nothing_observed_are_skipped_in_fit_and_filled_in_transform():
    X, _ = numeric_table(n=60)
    X[[4, 9]] = np.nan
    with pytest.warns(UserWarning, match="skipped 2 of 60 rows with every cell missing"):
        imputer = AnyOrderImputer(**TINY, reduce="conditional-mean").fit(X)
    assert imputer.skipped_rows_ == 2
    out = imputer.transform(X)
    assert np.isfinite(out[[4, 9]]).all()
    # nothing observed: the one-pass fill is the model's unconditional mean, the same for both rows
    assert np.array_equal(out[4], out[9])


def test_a_column_never_negative_in_fit_is_never_filled_below_zero():
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(size=200), np.abs(rng.normal(size=200)) * 0.05], 1)   # near 0: draws would cross it
    holes = rng.random(x.shape) < 0.4
    X = np.where(holes, np.nan, x)
    imputer = AnyOrderImputer(**{**TINY, "max_steps": 5}, reduce="mean", num_samples=20).fit(X)
    assert imputer.meta_["nonnegative"] == [False, True]
    low, high = imputer.quantiles(X, (0.05, 0.95), num_samples=20)
    assert (imputer.transform(X)[:, 1] >= 0).all() and (low[:, 1] >= 0).all() and (high[:, 1] >= 0).all()
    assert (low[holes[:, 0], 0] < 0).any()       # the unbounded column is not clipped


def test_intervals_cover_fresh_values_at_the_nominal_rate():
    # A network with zero output weights and biases gives every conditional the mixture of
    # identical N(0, 1) components (raw log-scale 0 is scale 1), i.e. N(mean_j, std_j) in
    # the table's units. With M = 39 draws the 5% and 95% quantiles sit at the 2nd and
    # 38th order statistics (places q(M+1)-1 = 1 and 37), which bracket a fresh value with
    # probability exactly (38 - 2) / 40 = 0.9. Over n = 3000 holes the rate's SE is
    # sqrt(0.09 / 3000) = 0.0055; the tolerance 0.025 is 4.5 SE.
    X, _ = numeric_table(n=3000, seed=5, rate=0.0)
    X[:, 2] -= 1.0                     # no bound: the known distribution is unclipped
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(X))
    imputer.levels_pit_ = None         # the draws' own levels (recalibration: the next test)
    query = X.copy()
    query[:, 1] = np.nan
    low, high = imputer.quantiles(query, (0.05, 0.95), num_samples=39)
    mean, std = imputer.meta_["mean"][1], imputer.meta_["std"][1]
    fresh = np.random.default_rng(11).normal(mean, std, size=len(X))
    inside = np.mean((fresh > low[:, 1]) & (fresh < high[:, 1]))
    assert abs(inside - 0.9) < 0.025
    assert np.array_equal(low[:, 0], X[:, 0])


def zeroed(imputer):
    """The imputer with zero output weights in both its models: every conditional N(0, 1) in
    model units (see the test above)."""
    with torch.no_grad():
        for model in (imputer.model_, imputer.draws_model_):
            for p in model.network.output.parameters():
                p.zero_()
    return imputer


def test_recalibration_on_held_out_rows_restores_the_nominal_coverage():
    # Draws N(0, 1), truth N(0, 1.3^2) (model units): the draws' 5%-95% interval covers
    # P(|Z| < 1.645 / 1.3) = 0.794 of fresh values. Recalibrated on 500 held-out rows (60%
    # of the cells hidden: ~900 cells), the levels move out to about Phi(1.3 Phi^-1(q))
    # (0.016, 0.984) and the intervals, from as many draws (100) as calibrated them, cover
    # 0.9. Tolerances: coverage SE over 2000 fresh cells 0.0067; each calibrated tail's
    # share, estimated from 900 cells, has SE sqrt(0.05 * 0.95 / 900) = 0.0073; 0.05 is about
    # 4 combined SE.
    X, _ = numeric_table(n=600, seed=5, rate=0.0)
    X[:, 2] -= 1.0
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(X))
    rng = np.random.default_rng(3)
    held_out = torch.from_numpy(rng.normal(0, 1.3, size=(500, 3))).float()
    imputer.levels_pit_ = imputer._calibrate(held_out, 0.6)
    mean, std = np.asarray(imputer.meta_["mean"]), np.asarray(imputer.meta_["std"])
    fresh = rng.normal(0, 1.3, size=(2000, 3)) * std + mean
    query = fresh.copy()
    query[:, 1] = np.nan
    low, high = imputer.quantiles(query, (0.05, 0.95), num_samples=100)
    assert abs(np.mean((fresh[:, 1] >= low[:, 1]) & (fresh[:, 1] <= high[:, 1])) - 0.9) < 0.05
    imputer.levels_pit_ = None
    low, high = imputer.quantiles(query, (0.05, 0.95), num_samples=100)
    assert abs(np.mean((fresh[:, 1] >= low[:, 1]) & (fresh[:, 1] <= high[:, 1])) - 0.794) < 0.03


def test_intervals_are_recalibrated_on_held_out_rows_masked_like_the_rows_to_fill():
    # Draws N(0, 1) whatever the row (a zeroed network), rows (model units) with x1 = 0.9 x0 +
    # sqrt(0.19) e, all N(0, 1). Holes at random: the draws' 90% interval covers 0.9 of x1 and
    # the levels of `fit` stay near nominal. Holes in x1 following the always-observed x0
    # (P = sigmoid(5 x0 - 4), MAR, 22.5% of the cells): hidden x1 lie high, and the same
    # interval covers only P(|x1| < 1.645 | hidden) = 0.79 (by simulation; counted on the
    # fresh rows themselves below). Recalibrated on held-out rows hidden by a logistic model
    # of those holes, it covers 0.9 (x1 the only column with holes, so its levels are not
    # shrunk towards other columns'). Tolerance: ~900 held-out hidden cells set each tail
    # (SE sqrt(0.05 * 0.95 / 900) = 0.0073, two tails 0.010), ~1350 fresh hidden cells
    # measure it (SE 0.0082): 0.05 is 3.8 combined SE. With the levels of `fit` alone
    # (set on ~300 cells) it stays near 0.79: below 0.85 is 3 SE from it.
    X, _ = numeric_table(n=600, seed=5, rate=0.0)
    X[:, 2] -= 1.0
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(X)).set_params(missingness="random")
    rng = np.random.default_rng(4)       # (a network blind to x0 looks self-masked to "auto": not tested here)

    def rows(n):
        x0, e, x2 = rng.normal(size=(3, n))
        return np.stack([x0, 0.9 * x0 + np.sqrt(0.19) * e, x2], 1)

    imputer.levels_pit_ = imputer._calibrate(torch.from_numpy(rows(500)).float(), 0.2)
    imputer.held_out_ = rows(4000)
    mean, std = np.asarray(imputer.meta_["mean"]), np.asarray(imputer.meta_["std"])
    fresh = rows(6000)
    hidden = np.zeros(fresh.shape, dtype=bool)
    hidden[:, 1] = rng.random(len(fresh)) < 1 / (1 + np.exp(-(5 * fresh[:, 0] - 4)))
    query = np.where(hidden, np.nan, fresh * std + mean)

    def coverage(imputer):
        low, high = imputer.quantiles(query, (0.05, 0.95), num_samples=100)
        truth = fresh[:, 1] * std[1] + mean[1]
        return np.mean(((truth >= low[:, 1]) & (truth <= high[:, 1]))[hidden[:, 1]])

    unmatched = np.mean(np.abs(fresh[hidden[:, 1], 1]) < 1.645)       # the draws' own interval, by the truth
    assert unmatched < 0.83
    assert abs(coverage(imputer) - 0.9) < 0.05
    imputer.held_out_ = None            # the levels of `fit` alone
    assert coverage(imputer) < 0.85
    # with no always-observed column there is nothing to match: the levels of `fit`, bit for bit
    imputer.held_out_ = rows(2000)
    query[::2, 0], query[1::2, 2] = np.nan, np.nan
    with_rows = np.stack(imputer.quantiles(query, (0.05, 0.95), num_samples=20))
    imputer.held_out_ = None
    assert np.array_equal(with_rows, np.stack(imputer.quantiles(query, (0.05, 0.95), num_samples=20)), equal_nan=True)


def test_a_categorical_hole_follows_what_the_self_masked_holes_of_its_row_imply():
    # c = "pos" exactly where x > 0.5 (31% of rows), z independent noise. Fresh rows lose x
    # and c together with probability sigmoid(6 x - 3) (self-masking of x: 32% of rows). Given
    # such a row's observed z alone, c is "neg" with probability 0.69, and the one-pass fill
    # says "neg"; given that x went missing, c is "pos" with probability
    # E[sigmoid(6x - 3) 1{x > 0.5}] / E[sigmoid(6x - 3)] = 0.863 (x ~ N(0, 1), by quadrature
    # below), so the fill that maximises the expected accuracy is "pos" in every such row.
    # missingness="self-masking" weighs the rows' joint draws by the mechanism it fits on
    # x's holes, and each categorical hole takes the most likely level of the weighted
    # mixture of the network's conditionals given each draw: "pos" in at least 95% of those
    # rows (it was "neg" in 99% before categorical holes were reweighted). `quantiles`' cells
    # there, the most frequent level of draws resampled by the weights: "pos" in at least 90%
    # (0% when they counted unweighted draws).
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)

    def table(n):
        x, z = rng.normal(size=(2, n))
        return pd.DataFrame({"x": x, "z": z, "c": np.where(x > 0.5, "pos", "neg")})

    grid = np.linspace(-8, 8, 16001)
    density, hidden_share = np.exp(-grid ** 2 / 2), 1 / (1 + np.exp(-(6 * grid - 3)))
    posterior = (density * hidden_share * (grid > 0.5)).sum() / (density * hidden_share).sum()
    assert abs(posterior - 0.863) < 0.001
    imputer = AnyOrderImputer(max_steps=400, width=32, depth=1, components=2, random_state=0, reduce="mean",
                              missingness="self-masking").fit(table(1500))
    fresh = table(600)
    hidden = rng.random(len(fresh)) < 1 / (1 + np.exp(-(6 * fresh["x"].to_numpy() - 3)))
    query = fresh.copy()
    query.loc[hidden, ["x", "c"]] = np.nan
    filled = imputer.transform(query)
    assert np.mean(filled.loc[hidden, "c"] == "pos") > 0.95
    low, _ = imputer.quantiles(query, num_samples=100)        # its categorical cells: the weighted draws' mode
    assert np.mean(low.loc[hidden, "c"] == "pos") > 0.9
    assert np.mean(imputer.set_params(missingness="random").transform(query).loc[hidden, "c"] == "neg") > 0.9
    assert abs(np.mean(fresh.loc[hidden, "c"] == "pos") - posterior) < 0.1      # the rows follow the posterior


def test_parameters_are_checked_with_one_line_errors():
    X, _ = numeric_table(n=40)
    for bad, message in ((dict(reduce="median"), "reduce"), (dict(width=0), "width"), (dict(max_time=-1), "max_time"),
                         (dict(budget_clock="cpu-time"), "budget_clock"), (dict(missingness="mnar"), "missingness"),
                         (dict(missingness="self-masking", reduce="conditional-mean"), "self-masking")):
        with pytest.raises(ValueError, match=message):
            AnyOrderImputer(**{**TINY, **bad}).fit(X)
    with pytest.raises(ValueError, match="infinity"):
        AnyOrderImputer(**TINY).fit(np.where(np.isnan(X), math.inf, X))
    imputer = AnyOrderImputer(**TINY).fit(np.array([["a", 1.0], ["b", 2.0], ["a", np.nan]] * 10, dtype=object))
    with pytest.raises(ValueError, match="'c'.*not one of the 2 levels"):
        imputer.transform(np.array([["c", 1.0]], dtype=object))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert imputer.transform(np.array([[None, 1.0]], dtype=object))[0, 0] in ("a", "b")


def test_every_parameter_and_argument_of_the_wrong_type_or_range_is_one_line(tmp_path):
    """Each parameter is checked where fit starts, whatever its type (a string where a number
    goes, a bool for seconds, a negative thread count that torch would refuse with a
    RuntimeError), and so are quantiles' num_samples, empty inputs, text in numeric columns
    and a file where `save` makes its folder."""
    X, _ = numeric_table(n=40)
    for bad, message in ((dict(learning_rate="x"), "learning_rate"), (dict(learning_rate=math.inf), "learning_rate"),
                         (dict(validation_fraction="0.1"), "validation_fraction"),
                         (dict(validation_fraction=None), "validation_fraction"),
                         (dict(categorical=None), "categorical"), (dict(categorical="a"), "categorical"),
                         (dict(threads=-2), "threads"), (dict(threads=0), "threads"), (dict(threads=2.5), "threads"),
                         (dict(device=3), "device"), (dict(max_time=True), "max_time")):
        with pytest.raises(ValueError, match=message) as caught:
            AnyOrderImputer(**{**TINY, **bad}).fit(X)
        assert "\n" not in str(caught.value)
    imputer = AnyOrderImputer(**{**TINY, "max_steps": 3}).fit(np.array([[1.0, "a"], [2.0, "b"], [np.nan, "a"]] * 5,
                                                                       dtype=object))
    for bad in (2.5, "100", True):
        with pytest.raises(ValueError, match="num_samples must be an integer"):
            imputer.quantiles(np.array([[np.nan, "a"]], dtype=object), num_samples=bad)
        with pytest.raises(ValueError, match="m must be an integer >= 1"):
            imputer.transform_draws(np.array([[np.nan, "a"]], dtype=object), m=bad)
    with pytest.raises(ValueError, match="0 sample"):
        imputer.transform(np.empty((0, 2), dtype=object))
    with pytest.raises(ValueError, match="column 0 is numeric .* 'x' \\(row 1\\)"):
        imputer.transform(np.array([[1.0, "a"], ["x", "b"]], dtype=object))
    for table, message in ((np.array([[1.0, "a"], [2.0, None], [3.0, "a"]] * 5, dtype=object), "column '1' is constant"),
                           (np.array([[1.0, {}], [2.0, None], [3.0, "a"]] * 5, dtype=object), "column 1 .* a dict")):
        with pytest.raises(ValueError, match=message):
            AnyOrderImputer(**TINY).fit(table)
    notes = tmp_path / "notes.txt"
    notes.write_text("kept")
    with pytest.raises(ValueError, match="it is a file, and a checkpoint is a folder"):
        imputer.save(notes)
    assert notes.read_text() == "kept"
    with pytest.raises(ValueError, match="cannot save a checkpoint to /proc/anyorder-.*: No such file"):
        imputer.save(f"/proc/anyorder-{os.getpid()}/imputer")       # a folder no one may make
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.array(X, dtype=float)[:, [0, 1, 0]], columns=["a", "b", "a"])
    with pytest.raises(ValueError, match="more than one column named 'a'") as caught:
        AnyOrderImputer(**TINY).fit(frame)
    assert "\n" not in str(caught.value)


def test_the_quantile_transform_maps_back_into_the_observed_range_and_saves(tmp_path):
    rng = np.random.default_rng(4)
    x = np.stack([rng.lognormal(size=300) * 100, rng.normal(size=300)], 1)
    holes = rng.random(x.shape) < 0.3
    X = np.where(holes, np.nan, x)
    imputer = AnyOrderImputer(**TINY, numeric_transform="quantile", reduce="mean", num_samples=5).fit(X)
    out = imputer.transform(X)
    observed = X[~holes[:, 0], 0]
    assert observed.min() <= out[:, 0].min() and out[:, 0].max() <= observed.max()
    imputer.save(tmp_path / "q")
    assert np.array_equal(AnyOrderImputer.load(tmp_path / "q").transform(X), out)


def test_quantile_normal_inverts_its_forward_map_and_puts_values_on_normal_scores():
    from anyorder.column_transforms import QuantileNormal
    values = np.random.default_rng(5).exponential(size=5000)
    transform = QuantileNormal.fit(values)
    scores = transform.forward(values)
    # normal scores of the empirical distribution: mean 0 and variance 1 up to the
    # sampling error of 5000 values and the ±3.7 clip (SE of the mean 0.014; tolerance 0.05)
    assert abs(scores.mean()) < 0.05 and abs(scores.std() - 1) < 0.05
    inner = (values > transform.knots[0]) & (values < transform.knots[-1])
    assert np.allclose(transform.inverse(scores)[inner], values[inner], rtol=1e-9, atol=1e-12)


def test_reduce_mean_fills_categories_with_their_conditional_mode_and_numbers_with_the_draws_mean():
    rng = np.random.default_rng(3)
    z = rng.normal(size=200)
    X = np.stack([np.where(z > 0, "up", "down"), z + 0.1 * rng.normal(size=200), rng.normal(size=200)],
                 1).astype(object)
    X[:, 1:] = X[:, 1:].astype(float)
    holes = rng.random(X.shape) < 0.3
    holes[holes.all(1), 2] = False
    given = X.copy()
    given[holes] = None
    imputer = AnyOrderImputer(**{**TINY, "max_steps": 60}, reduce="mean", num_samples=7).fit(given)
    mean = imputer.transform(given)
    one_pass = imputer.set_params(reduce="conditional-mean").transform(given)
    draws = imputer._draws(encode_for(imputer, given), 7, imputer.model_)
    assert (mean[:, 0] == one_pass[:, 0]).all()                   # the conditional's most likely level
    numeric = holes[:, 1:]
    assert np.allclose(mean[:, 1:][numeric].astype(float), draws.mean(0)[:, 1:][numeric], rtol=1e-6, atol=1e-9)


def encode_for(imputer, X):
    from anyorder.frames import encode
    return encode(X, imputer.columns_)


def test_self_masking_moves_the_fills_of_self_masked_holes_towards_the_hidden_large_values(tmp_path):
    # complete correlated rows to fit; rows to fill whose cells went missing with
    # probability sigmoid(3 z - 2) of their own value z: the hidden values are the large ones
    rng = np.random.default_rng(4)
    z = rng.normal(size=(900, 1))
    x = z + 0.5 * rng.normal(size=(900, 3))
    fit_rows, rows = x[:600], x[600:]
    hidden = rng.random(rows.shape) < 1 / (1 + np.exp(-(3 * (rows - rows.mean(0)) / rows.std(0) - 2)))
    hidden[hidden.all(1), 0] = False
    given = np.where(hidden, np.nan, rows)
    imputer = AnyOrderImputer(**{**TINY, "max_steps": 300, "width": 32}).fit(fit_rows)
    at_random = imputer.set_params(missingness="random").transform(given)
    masked = imputer.set_params(missingness="self-masking", reduce="mean").transform(given)
    assert np.array_equal(masked[~hidden], rows[~hidden])
    error_random, error_masked = (at_random - rows)[hidden].mean(), (masked - rows)[hidden].mean()
    # the missing-at-random fills fall well below the hidden values (the mechanism hides the
    # large ones, about 1 SD above the mean); the reweighted fills close most of that gap
    assert error_random < -0.4 and abs(error_masked) < abs(error_random) / 2
    # missingness="auto" finds the mechanism in columns 1 and 2 (~100 hidden cells each
    # against a slope of 3 per SD; tested against the slope that 60 held-out rows with
    # holes at random show, whose standard error dominates: statistics near 15, beyond
    # Bonferroni's 1% / 3 point, 8.3; column 0, whose holes were partly put back above, is
    # weaker and not asserted) and closes most of the gap; its 90% intervals come from the
    # weighted draws
    found = imputer.set_params(missingness="auto", reduce="conditional-mean").detect_self_masking(given)
    assert found["self_masked"][1:].all() and (found["p_value"][1:] < 0.01 / 3).all() and (found["slope"][1:] > 1).all()
    auto = imputer.transform(given)
    assert np.array_equal(auto[~hidden], rows[~hidden])
    imputer.save(tmp_path / "imputer")            # the held-out reference travels with the weights
    loaded = AnyOrderImputer.load(tmp_path / "imputer")
    assert np.array_equal(loaded.detect_self_masking(given)["statistic"], found["statistic"])
    assert abs((auto - rows)[hidden].mean()) < abs(error_random) / 2
    # multiple imputation resamples the weighted rows' draws by the same weights: their mean
    # over 20 copies closes the gap too, where the unweighted draws' stays below
    copies = imputer.transform_draws(given, m=20)
    plain = np.mean(imputer.set_params(missingness="random").transform_draws(given, m=20), 0)
    imputer.set_params(missingness="auto")
    assert all(np.array_equal(copy[~hidden], rows[~hidden]) for copy in copies)
    drawn = np.mean(copies, 0)
    assert abs((drawn - rows)[hidden].mean()) < abs(error_random) / 2 < abs((plain - rows)[hidden].mean())
    low, high = imputer.quantiles(given, (0.05, 0.95), num_samples=100)
    plain_low, plain_high = imputer.set_params(missingness="random").quantiles(given, (0.05, 0.95), num_samples=100)
    # (every hole's weighted posterior lies above its unweighted one here, since the weights
    # grow with the row's hidden values and the columns are positively correlated: the
    # intervals move up with the fills, by 0.43 against the fills' 0.44 when written)
    shift = ((low + high) / 2 - (plain_low + plain_high) / 2)[hidden]
    assert shift.mean() > 0.5 * (auto - at_random)[hidden].mean() > 0 and (shift > 0).mean() > 0.9
    # holes completely at random in the same rows (~60 per column): the test's family-wise
    # false-positive rate is 1%, and with this seed it declares nothing, so "auto" returns
    # exactly the missing-at-random fills
    at_random_holes = np.where(np.random.default_rng(5).random(rows.shape) < 0.2, np.nan, rows)
    found = imputer.set_params(missingness="auto").detect_self_masking(at_random_holes)
    assert not found["self_masked"].any() and (found["p_value"] > 0.01 / 3).all()
    assert np.array_equal(imputer.transform(at_random_holes),
                          imputer.set_params(missingness="random").transform(at_random_holes))
    # holes at random but not completely: column 0 always observed, columns 1 and 2 hidden
    # with probability sigmoid(3 z0 - 1.5) of column 0's standardised value (MAR). The
    # hidden cells are then large too (the columns are correlated), and a model of
    # self-masking alone finds a slope in both (its Wald statistics against the held-out
    # reference beyond Bonferroni's point); conditioned on the always-observed column 0, the
    # own-value slopes are 0 in truth and, with this seed, nothing is declared
    z0 = (rows[:, 0] - rows[:, 0].mean()) / rows[:, 0].std()
    mar = np.random.default_rng(6).random((len(rows), 2)) < 1 / (1 + np.exp(-(3 * z0[:, None] - 1.5)))
    mar_holes = rows.copy()
    mar_holes[:, 1:][mar] = np.nan
    found = imputer.set_params(missingness="auto").detect_self_masking(mar_holes)
    assert not found["self_masked"].any()
    values = encode_for(imputer, mar_holes)
    hidden = np.isnan(values)
    draws = imputer._model_units(imputer._draws(values, 100, imputer.draws_model_))
    alone, _, _, se = fit_conditioned(draws, hidden, np.ones(3, dtype=bool))
    reference = imputer.mechanism_reference_
    statistic = against_reference(alone, se, np.zeros(3), reference["slope"], reference["se"])
    assert self_masked_columns(statistic, np.array([False, True, True]), 0.01).any()


def test_per_column_recalibration_fixes_columns_miscalibrated_in_opposite_ways():
    # Draws N(0, 1) in every column (model units); truths N(0, 1.3^2) in column 0 (intervals
    # too narrow) and N(0, 0.7^2) in column 1 (too wide). Pooled, one pair of levels serves
    # both: column 0 stays under-covered and column 1 over-covered. Per column (each with
    # ~300 held-out cells, shrunk towards the pooled levels as if those were 200), both
    # move towards 0.9 (here: pooled 0.79 and 0.98, per column 0.85 and 0.93; a column's
    # own levels alone would give 0.9). Coverage SE over 4000 fresh cells: 0.005; the
    # margins below (0.02) are 4 SE.
    X, _ = numeric_table(n=600, seed=5, rate=0.0)
    X[:, 2] -= 1.0
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(X))
    rng = np.random.default_rng(3)
    scale = np.array([1.3, 0.7, 1.0])
    held_out = torch.from_numpy(rng.normal(size=(500, 3)) * scale).float()
    imputer.levels_pit_ = imputer._calibrate(held_out, 0.6)
    mean, std = np.asarray(imputer.meta_["mean"]), np.asarray(imputer.meta_["std"])
    fresh = rng.normal(size=(4000, 3)) * scale * std + mean
    query = fresh.copy()
    query[:, :2] = np.nan

    def cover(calibration):
        low, high = imputer.set_params(calibration=calibration).quantiles(query, (0.05, 0.95), num_samples=100)
        return [np.mean((fresh[:, j] >= low[:, j]) & (fresh[:, j] <= high[:, j])) for j in (0, 1)]

    pooled, per_column = cover("pooled"), cover("per-column")
    assert pooled[0] < 0.9 - 0.02 and pooled[1] > 0.9 + 0.02
    assert pooled[0] + 0.02 < per_column[0] < 0.9 + 0.02 and 0.9 - 0.02 < per_column[1] < pooled[1] - 0.02


def test_discrete_columns_are_those_with_few_values_each_seen_often():
    from anyorder.imputer import DISCRETE_REPEATS, DISCRETE_VALUES, discrete_support
    rng = np.random.default_rng(0)
    n = 200
    counts = rng.integers(0, 5, size=n).astype(float)       # 5 values, 40 cells each
    counts[:7] = np.nan                                      # holes are not values
    many = rng.integers(0, DISCRETE_VALUES + 1, size=n).astype(float)   # one value too many
    rare = np.arange(n, dtype=float) % (n // DISCRETE_REPEATS + 1)      # seen just under 5 times each
    values = np.stack([counts, rng.normal(size=n), many, rare, counts], 1)
    support = discrete_support(values, np.array([True, True, True, True, False]))
    assert np.array_equal(support[0], np.arange(5.0))
    assert support[1] is None and support[2] is None and support[3] is None
    assert support[4] is None                                 # categorical: levels, not values
    assert len(np.unique(many)) == DISCRETE_VALUES + 1 and n < DISCRETE_REPEATS * len(np.unique(rare))
    assert np.array_equal(discrete_support(values[:, [2]] % DISCRETE_VALUES, np.array([True]))[0],
                          np.arange(float(DISCRETE_VALUES)))


def test_atoms_are_values_holding_a_share_of_a_continuous_column_with_cells_half_way_to_their_neighbours_or_past_its_ends():
    from anyorder.imputer import ATOM_SHARE, DISCRETE_REPEATS, atom_cells
    rng = np.random.default_rng(0)
    n = 320
    positive = np.linspace(1.0, 3.0, n - 100)                    # distinct, 1 nearest to 0
    zero_inflated = rng.permutation(np.r_[np.zeros(100), positive])
    interior = np.r_[np.full(20, 5.0), np.linspace(0.0, 10.0, n - 20)]    # 5 between 4.98 and 5.02
    rare = np.r_[np.full(int(ATOM_SHARE * n) - 1, 7.0), rng.normal(size=n - int(ATOM_SHARE * n) + 1)]
    few = np.r_[np.full(DISCRETE_REPEATS - 1, 7.0), rng.normal(size=n - DISCRETE_REPEATS + 1)][:4 * DISCRETE_REPEATS]
    values = np.stack([zero_inflated, interior, rare, rng.normal(size=n), np.full(n, 2.0), zero_inflated], 1)
    values[:9, 0] = np.nan                                        # holes are not values
    atoms = atom_cells(values, np.array([True, True, True, True, True, False]), [None] * 6)
    assert np.array_equal(atoms[0], [[0.0, -np.inf, 0.5]])        # no value below: unbounded there
    neighbours = np.sort(np.unique(interior))
    k = np.searchsorted(neighbours, 5.0)
    assert np.allclose(atoms[1], [[5.0, (neighbours[k - 1] + 5) / 2, (neighbours[k + 1] + 5) / 2]])
    assert atoms[2] is None and atoms[3] is None                  # under ATOM_SHARE; no repeats
    assert np.array_equal(atoms[4], [[2.0, -np.inf, np.inf]])     # the only value takes every draw
    assert atoms[5] is None                                       # categorical
    assert atom_cells(few[:, None], np.array([True]), [None])[0] is None        # under DISCRETE_REPEATS
    assert atom_cells(values[:, :1], np.array([True]), [np.array([0.0, 1.0])])[0] is None    # discrete


def test_an_atom_at_the_top_of_a_range_takes_every_draw_beyond_it():
    # Column 1: 100 cells at a top code of 5, 500 spread over [0, 4.9]. The zeroed network's
    # conditional is N(mean, std^2) of the train split; snapped, no draw exceeds 5 and the
    # share at 5 is that Gaussian's mass above the cell's lower edge (half way to the
    # column's largest other value), about 0.1: 4000 draws, binomial SE 0.005.
    rng = np.random.default_rng(3)
    column = rng.permutation(np.r_[np.full(100, 5.0), rng.uniform(0, 4.9, 500)])
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(np.stack([rng.normal(size=600), column], 1)))
    (atom, low, high), = imputer.atoms_[1]
    assert atom == 5 and high == np.inf and low == (5 + column[column < 5].max()) / 2
    mean, std = imputer.meta_["mean"][1], imputer.meta_["std"][1]
    mass = 0.5 * math.erfc((low - mean) / std / math.sqrt(2))
    query = np.stack([rng.normal(size=400), np.full(400, np.nan)], 1)
    draws = np.stack(imputer.transform_draws(query, m=10))[..., 1]
    assert draws.max() == 5 and abs(np.mean(draws == 5) - mass) < 5 * math.sqrt(mass * (1 - mass) / draws.size)


def test_an_atom_takes_the_draws_of_its_cell_and_bounds_inside_the_cell_move_out_onto_it(tmp_path):
    # Column 1: 420 zeros, 170 values in [1, 3], 10 in [-3, -1] (some negative: no floor at 0).
    # The zeroed network's conditional is N(mean, std^2) of the train split; snapped, the atom 0
    # gets that Gaussian's mass in its cell (about 0.33), and the draws' quantiles at levels
    # 0.22 and 0.35 (above the mass below the cell, about 0.15, and below that up to its top,
    # about 0.49, by 3.7 and 5.4 binomial SD of 400 draws) are the atom exactly. Unsnapped,
    # they are points of a continuous distribution, never exactly 0.
    rng = np.random.default_rng(2)
    column = rng.permutation(np.r_[np.zeros(420), rng.uniform(1, 3, 170), rng.uniform(-3, -1, 10)])
    x = np.stack([rng.normal(size=600), column], 1)
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(x))
    assert imputer.atoms_[0] is None and len(imputer.atoms_[1]) == 1
    atom, low, high = imputer.atoms_[1][0]
    mean, std = imputer.meta_["mean"][1], imputer.meta_["std"][1]
    mass = 0.5 * (math.erf((high - mean) / std / math.sqrt(2)) - math.erf((low - mean) / std / math.sqrt(2)))
    query = np.stack([rng.normal(size=400), np.full(400, np.nan)], 1)
    draws = np.stack(imputer.transform_draws(query, m=10))[..., 1]
    assert atom == 0 and not ((draws > low) & (draws < high) & (draws != 0)).any()
    assert abs(np.mean(draws == 0) - mass) < 5 * math.sqrt(mass * (1 - mass) / draws.size)
    imputer.levels_pit_ = None                                    # the levels as asked
    bounds = np.stack(imputer.quantiles(query, (0.22, 0.35), num_samples=400))[..., 1]
    assert np.mean(bounds == 0, axis=1).min() > 0.95
    imputer.save(tmp_path / "imputer")
    loaded = AnyOrderImputer.load(tmp_path / "imputer")
    assert loaded.atoms_[0] is None and np.array_equal(loaded.atoms_[1], imputer.atoms_[1])
    imputer.atoms_ = [None, None]
    assert np.mean(np.stack(imputer.quantiles(query, (0.22, 0.35), num_samples=400))[..., 1] == 0) == 0
    imputer.atoms_ = [None, np.array([[0.0, -0.5, 0.5]])]          # the rule by hand, X's units
    moved = imputer._outward(np.array([[[0.0, 0.3], [0.0, -0.2]], [[0.0, 0.3], [0.0, -0.2]]]), (0.05, 0.95))
    assert np.array_equal(moved[..., 1], [[0.0, -0.2], [0.3, 0.0]])   # lower bounds down, upper up, onto 0


def test_a_discrete_column_is_drawn_on_its_values_and_its_intervals_calibrated_at_each_end():
    # Column 1 takes 0, 1, 2 (21, 558, 21 times: mean 1, std 0.2646; the model's are those of
    # its train split, about the same). The zeroed network's conditional is N(1, 0.2646^2); snapped to the nearest value, 0 and 2 each get
    # P(Z < -0.5 / 0.2646) = 0.0294 and 1 gets 0.9412, and fresh values follow exactly that.
    # A 90% interval may miss 0.05 at each end, so [1, 1] (missing 0.0294 at each) is the
    # right one. Calibrated at each end, the lower bound is 1 wherever the row's 100 draws
    # hold at most ~92 values below 2 ... i.e. nearly always (P(Bin(100, 0.0294) > 7) = 0.005).
    # One level per cell (where the truth's tied draws begin) at both ends counts a truth of
    # 1 as lying above only the draws of 0 (~3 of 100), so its lower level sits near 0.01
    # and the lower bound drops to 0 wherever a draw is 0 (P = 1 - 0.9706^100 = 0.95).
    # Coverage of 4000 fresh cells: 0.9412, SE 0.0037; the margins below are 5 SE or more.
    rng = np.random.default_rng(4)
    x = np.stack([rng.normal(size=600), np.r_[np.zeros(21), np.full(21, 2.0), np.ones(558)]], 1)
    imputer = zeroed(AnyOrderImputer(**{**TINY, "max_steps": 2}).fit(x))
    assert imputer.discrete_[0] is None and np.array_equal(imputer.discrete_[1], [0.0, 1.0, 2.0])
    mean, std = np.asarray(imputer.meta_["mean"]), np.asarray(imputer.meta_["std"])

    def exact(size):
        return np.clip(np.round(rng.normal(mean[1], std[1], size=size)), 0, 2)

    held_out = np.stack([rng.normal(size=500), (exact(500) - mean[1]) / std[1]], 1)
    imputer.levels_pit_ = imputer._calibrate(torch.from_numpy(held_out).float(), 0.6)
    fresh = exact(4000)
    query = np.stack([rng.normal(size=4000) * std[0] + mean[0], np.full(4000, np.nan)], 1)
    low, high = imputer.quantiles(query, (0.05, 0.95), num_samples=100)
    draws = np.stack(imputer.transform_draws(query[:50], m=5))[..., 1]
    assert set(np.unique(draws)) <= {0.0, 1.0, 2.0} and set(np.unique(low[:, 1])) | set(np.unique(high[:, 1])) <= {0.0, 1.0, 2.0}
    assert np.mean(low[:, 1] == 1) > 0.95 and np.mean(high[:, 1] == 1) > 0.95
    end = 0.5 * math.erfc(0.5 / std[1] / math.sqrt(2))       # each end's mass under the model (0.0294 at 0.2646)
    assert end < 0.05 and abs(np.mean((fresh >= low[:, 1]) & (fresh <= high[:, 1])) - (1 - 2 * end)) < 0.02
    imputer.levels_pit_["lower"] = imputer.levels_pit_["upper"]      # one level per cell at both ends
    one_level, _ = imputer.quantiles(query, (0.05, 0.95), num_samples=100)
    assert np.mean(one_level[:, 1] == 0) > 0.8


def test_the_command_line_fills_a_file_as_the_saved_imputer_does(tmp_path):
    # A checkpoint of AnyOrderImputer.save (a quantile-transformed numeric column, whose
    # network works in normal scores, and a categorical one): `anyorder impute` on a file of
    # the table writes the imputer's own fills (its transform, at the file's 3 decimals) and
    # keeps the observed cells' text; with --quantiles the side file holds its calibrated
    # bounds, and its categorical shares sum to 1. Its bare network, read as a plain trained
    # model, gave fills from the wrong units here (RMSE 1.8 against 0.9).
    pd = pytest.importorskip("pandas")
    from anyorder.cli import main
    from anyorder.data.table_io import intervals_path
    rng = np.random.default_rng(7)
    z = rng.normal(size=300)
    frame = pd.DataFrame({"a": np.exp(z + 0.3 * rng.normal(size=300)).round(3), "b": (z + 0.5 * rng.normal(size=300)).round(3),
                          "c": np.where(z > 0.3, "high", np.where(z < -0.3, "low", "mid"))})
    imputer = AnyOrderImputer(**TINY, numeric_transform="quantile").fit(frame)
    imputer.save(tmp_path / "imputer")
    holes = frame.mask(rng.random(frame.shape) < 0.25)
    holes.iloc[:, 2] = holes.iloc[:, 2].astype(object)
    holes.to_csv(tmp_path / "holes.csv", index=False)
    out, side = tmp_path / "filled.csv", intervals_path(tmp_path / "filled.csv")
    assert main(["impute", str(tmp_path / "imputer"), "--input", str(tmp_path / "holes.csv"), "--output", str(out),
                 "--quantiles", "0.05,0.95", "--num-samples", "40", "--quiet"]) == 0
    written, given = pd.read_csv(out, dtype=str), pd.read_csv(tmp_path / "holes.csv", dtype=str)
    missing = holes.isna().to_numpy()
    assert (written.to_numpy()[~missing] == given.to_numpy()[~missing]).all()
    expected = imputer.transform(holes)
    for j, name in enumerate(["a", "b"]):
        rows = missing[:, j]
        assert np.abs(written[name][rows].astype(float).to_numpy() - expected[name][rows].to_numpy()).max() <= 0.0005 + 1e-9
    assert (written["c"][missing[:, 2]] == expected["c"][missing[:, 2]]).all()
    low, high = imputer.quantiles(holes, (0.05, 0.95), num_samples=40)
    bounds = pd.read_csv(side)
    numeric = bounds[bounds["column"] != "c"]
    for name, frame_bound in (("q0.05", low), ("q0.95", high)):
        mine = np.array([frame_bound.loc[r, c] for r, c in zip(numeric["row"], numeric["column"])], dtype=float)
        assert np.abs(numeric[name].to_numpy() - mine).max() <= 0.0005 + 1e-9
    shares = [sum(json.loads(p).values()) for p in bounds[bounds["column"] == "c"]["probabilities"]]
    assert len(shares) == missing[:, 2].sum() and np.allclose(shares, 1.0, atol=1e-5)
    # a file with no numeric cell to show its precision gets the fit's: 3 decimals
    (tmp_path / "blank.csv").write_text("a,b,c\n,,low\n")
    assert main(["impute", str(tmp_path / "imputer"), "--input", str(tmp_path / "blank.csv"),
                 "--output", str(tmp_path / "blank-out.csv"), "--quiet"]) == 0
    row = (tmp_path / "blank-out.csv").read_text().splitlines()[1].split(",")
    assert [len(cell.partition(".")[2]) for cell in row[:2]] == [3, 3] and row[2] == "low"
    # intervals without --num-samples: 100 draws (the imputer's own 20 cannot place the 1%
    # quantile, which needs 100; with 10 by default the command refused any --quantiles)
    assert main(["impute", str(tmp_path / "imputer"), "--input", str(tmp_path / "blank.csv"),
                 "--output", str(tmp_path / "blank-q.csv"), "--quantiles", "0.01,0.99", "--quiet"]) == 0
    assert len(pd.read_csv(intervals_path(tmp_path / "blank-q.csv"))) == 2
