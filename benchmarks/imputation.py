"""Table imputation: anyorder against the imputers people reach for.

Per table, MCAR holes in `--rates` of the cells of the test rows (each row keeps at least
one observed cell), `--seeds` mask seeds. Scores: NRMSE on the hidden numeric cells
(`anyorder.impute.nrmse`, ACE's definition: per-column RMSE / the column's std over the
scored rows, averaged over columns), accuracy on the hidden categorical cells, and each
method's wall time. Methods:

  anyorder, conditional mean   one pass per row (`impute(reduce="conditional-mean")`;
                               categorical cells get the mode of their conditional)
  anyorder, mean of draws      mean of --draws joint draws (`impute(reduce="sample")`);
  anyorder, median of draws    median of the same draws; categorical cells: the most
                               frequent level among the draws, for both
  column mean / mode           of the train rows
  KNN                          scikit-learn KNNImputer(5), fit on the train rows
  IterativeImputer             scikit-learn, BayesianRidge, 10 rounds, fit on the train rows
  MissForest, HyperImpute,     the `hyperimpute` package's plugins; they impute in
  GAIN, MIWAE                  fit_transform, so each gets [train rows; masked test rows]

Every method sees the same information: the complete train rows and the observed cells of
the test rows (anyorder trains on the train rows only and never sees the masked test rows
in training). One anyorder model per table (train seed 0), trained once, answers every
rate and seed; its time is given apart (train s). All methods work in the model's
standardised units (NRMSE does not change under a per-column affine map); categorical
cells are level ids, and the baselines, which treat them as numbers, are rounded to the
nearest level.

Coverage: per hidden numeric cell, the 5% and 95% quantiles of the --draws draws form a
90% interval; the report gives the share of hidden cells inside it (target 88-92%), with
quantiles placed as numpy does and at the places that make the coverage unbiased
(`order_quantiles`).

Row caps (--train-rows, --test-rows) keep HyperImpute and MissForest, which take minutes
on a few thousand rows, inside the budget: the default run subsamples both (seeded) and
says so in its output. --quick is a smoke run (few rows, few steps, one seed).

    python benchmarks/imputation.py --threads 1                    # 3 numeric + 1 mixed table; see the README
    python benchmarks/imputation.py --quick --threads 1            # smoke run, a few minutes
    python benchmarks/imputation.py --threads 1 --tables magic --rates 0.2 --methods anyorder hyperimpute

Baselines need `pip install -e .[imputation]` (hyperimpute with pandas 2.3.3 and
scikit-learn 1.7.2: with newer pandas/scikit-learn its hyperimpute plugin silently returns
near-column-mean fills). Every baseline is checked against the column mean and the check
is printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from anyorder.build import load_model
from anyorder.config import load_config
from anyorder.data.base import Dataset
from anyorder.data.tables import load_table
from anyorder.impute import impute, nrmse
from anyorder.train import train
from common import add_threads_flag, machine, set_threads

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "tabular"
NUMERIC_TABLES = {"magic": "magic.tsv.gz", "houses": "537_houses.tsv.gz", "house_16H": "574_house_16H.tsv.gz"}
# statsmodels' `fair` (Fair 1978, a women's magazine survey, 6366 rows): two nominal columns
# (occupation and husband's occupation, 6 levels each) and two ordinal ratings coded as
# categories, with five numeric columns.
FAIR_CATEGORICAL = ["rate_marriage", "religious", "occupation", "occupation_husb"]
FAIR_NUMERIC = ["age", "yrs_married", "children", "educ", "affairs"]
# Tables no default or lever was chosen on (shipped with statsmodels and scikit-learn, so they load
# offline): the RAND health insurance experiment (20190 rows, counts, logs and binary flags), the
# diabetes progression study (442 rows) and the Wisconsin breast-cancer features (569 rows, 30
# skewed measurements); every column numeric, the target kept as a column.
UNSEEN_TABLES = ("randhie", "diabetes", "breast_cancer")
PAIRED_BLENDS = {"gaussian": ("none",), "stack": ("none", "gaussian"), "none": ()}   # fitted blend -> also scored
BASELINES = ("mean", "knn", "iterative", "missforest", "hyperimpute", "gain", "miwae")
MASKS = ("mcar", "mar", "mnar")
LABELS = {"imputer": "AnyOrderImputer, default (conditional mean, blend=\"auto\": the stack from 500 rows, else gaussian)",
          "imputer_gaussian": "AnyOrderImputer, the same fit with blend=\"gaussian\"",
          "imputer_network": "AnyOrderImputer, conditional mean of the network alone (blend=\"none\")", "imputer_draws": "AnyOrderImputer, mean of 20 draws",
          "imputer_mnar": "AnyOrderImputer, missingness=\"self-masking\"",
          "imputer_draws100": "AnyOrderImputer, mean of 100 draws",
          "imputer_auto": "AnyOrderImputer, missingness=\"auto\" (conditional mean)",
          "imputer_drawmode": "AnyOrderImputer, mean of 20 draws, categories: most frequent of the draws",
          "imputer_blend": "AnyOrderImputer, (conditional mean + mean of 20 draws) / 2",
          "cmean": "anyorder, conditional mean", "dmean": "anyorder, mean of draws",
          "dmedian": "anyorder, median of draws", "mean": "column mean / mode", "knn": "KNN (k=5)",
          "iterative": "IterativeImputer", "missforest": "MissForest", "hyperimpute": "HyperImpute",
          "gain": "GAIN", "miwae": "MIWAE"}


# ---------------------------------------------------------------- data

def fair_table(out: Path) -> Path:
    """statsmodels' `fair` survey as a TSV file with its categories written as text."""
    import statsmodels.api as sm
    frame = sm.datasets.fair.load_pandas().data[FAIR_CATEGORICAL + FAIR_NUMERIC].copy()
    for column in FAIR_CATEGORICAL:
        frame[column] = [f"{column}{int(v)}" for v in frame[column]]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fair.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


def unseen_table(name: str, out: Path) -> Path:
    """One of UNSEEN_TABLES as a TSV file, every column numeric."""
    if name == "randhie":
        import statsmodels.api as sm
        frame = sm.datasets.randhie.load_pandas().data
    else:
        from sklearn import datasets
        loaded = (datasets.load_diabetes(as_frame=True, scaled=False) if name == "diabetes"
                  else datasets.load_breast_cancer(as_frame=True))
        frame = loaded.frame
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.tsv"
    frame.astype(float).to_csv(path, sep="\t", index=False)
    return path


def load(name: str, scratch: Path) -> Dataset:
    if name in NUMERIC_TABLES:
        return load_table(DATA / NUMERIC_TABLES[name])
    if name in UNSEEN_TABLES:
        path = unseen_table(name, scratch)
        return load_table(path, numeric=path.open().readline().rstrip("\n").split("\t"))
    return load_table(fair_table(scratch), categorical=FAIR_CATEGORICAL, numeric=FAIR_NUMERIC)


def categorical_columns(data: Dataset) -> np.ndarray:
    """Bool `[D]`: which columns hold category level ids (tables with a `levels` record)."""
    levels = data.meta.get("levels") or [None] * data.dim
    return np.array([lv is not None for lv in levels])


def subsample(rows: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    if cap <= 0 or len(rows) <= cap:
        return rows
    return rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:cap]]


def mcar(shape, rate: float, seed: int) -> np.ndarray:
    """Hide each cell with probability `rate`; a row left with no observed cell gets one back."""
    rng = np.random.default_rng(seed)
    return _keep_one(rng.random(shape) < rate, rng)


def _keep_one(hidden: np.ndarray, rng) -> np.ndarray:
    full = np.flatnonzero(hidden.all(1))
    hidden[full, rng.integers(hidden.shape[1], size=len(full))] = False
    return hidden


def _logistic_rate(scores: np.ndarray, rate: float) -> np.ndarray:
    """Per-column intercepts b (bisection) such that sigmoid(scores + b) averages `rate`
    down each column of scores `[N, K]` -> probabilities `[N, K]`."""
    low, high = np.full(scores.shape[1], -50.0), np.full(scores.shape[1], 50.0)
    for _ in range(60):
        b = (low + high) / 2
        too_many = (1 / (1 + np.exp(-(scores + b)))).mean(0) > rate
        high, low = np.where(too_many, b, high), np.where(too_many, low, b)
    return 1 / (1 + np.exp(-(scores + (low + high) / 2)))


def mar(x: np.ndarray, rate: float, seed: int, observed_share: float = 0.3) -> np.ndarray:
    """Missing at random (the MIWAE / HyperImpute simulator's logistic MAR): a random 30% of
    the columns are always observed; each other cell is hidden with a logistic probability
    of the row's always-observed cells (random weights), its intercept set so that `rate`
    of all cells are hidden."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    kept = rng.choice(d, size=max(1, int(round(observed_share * d))), replace=False)
    rest = np.setdiff1d(np.arange(d), kept)
    z = (x - x.mean(0)) / x.std(0)
    weights = rng.normal(size=(len(kept), len(rest)))
    scores = z[:, kept] @ weights / np.sqrt(len(kept))
    hidden = np.zeros((n, d), dtype=bool)
    hidden[:, rest] = rng.random((n, len(rest))) < _logistic_rate(scores, min(0.95, rate * d / len(rest)))
    return _keep_one(hidden, rng)


def mnar(x: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Missing not at random, self-masking (MIWAE's and not-MIWAE's logistic self-masking):
    each cell is hidden with probability sigmoid(2 z + b_j) of its own standardised value
    z, so large values go missing more often; b_j set so that `rate` of each column is hidden."""
    rng = np.random.default_rng(seed)
    z = (x - x.mean(0)) / x.std(0)
    return _keep_one(rng.random(x.shape) < _logistic_rate(2 * z, rate), rng)


def make_mask(kind: str, truth: np.ndarray, rate: float, seed: int) -> np.ndarray:
    if kind == "mcar":
        return mcar(truth.shape, rate, seed)
    return (mar if kind == "mar" else mnar)(truth, rate, seed)


# ---------------------------------------------------------------- scores

def scores(truth: np.ndarray, filled: np.ndarray, hidden: np.ndarray, categorical: np.ndarray) -> dict:
    """NRMSE over the hidden numeric cells, accuracy over the hidden categorical cells."""
    out = {}
    num = ~categorical
    if (hidden[:, num]).any():
        t = torch.from_numpy(truth[:, num]).double()
        out["nrmse"] = nrmse(t, torch.from_numpy(filled[:, num]).double(), torch.from_numpy(hidden[:, num])).item()
        # signed error in column stds, averaged over the hidden numeric cells: under
        # self-masking (MNAR) the hidden values are the large ones, and this says how far
        # below them a method's fills fall
        scale = truth[:, num].std(0)
        out["bias"] = float(((filled[:, num] - truth[:, num]) / np.where(scale > 0, scale, 1))[hidden[:, num]].mean())
    if (hidden[:, categorical]).any():
        cells = hidden[:, categorical]
        out["accuracy"] = float((filled[:, categorical][cells] == truth[:, categorical][cells]).mean())
    return out


def snap_levels(filled: np.ndarray, categorical: np.ndarray, levels: list) -> np.ndarray:
    """Round a baseline's numeric fill of each categorical column to the nearest level id."""
    filled = filled.copy()
    for j in np.flatnonzero(categorical):
        filled[:, j] = np.clip(np.rint(filled[:, j]), 0, len(levels[j]) - 1)
    return filled


# ---------------------------------------------------------------- anyorder

def train_anyorder(data: Dataset, train_rows: torch.Tensor, preset: str, overrides: list[str], out: Path):
    """Train `preset` on `train_rows` (the rows the baselines see) and load it back."""
    config = load_config(preset, [f"train.out={out}", "train.device=cpu", "train.seed=0"] + overrides)
    config.data = {"kind": "table", "source": data.meta["source"]}
    subset = Dataset(kind=data.kind, dim=data.dim, num_classes=data.num_classes, train=train_rows,
                     splits={"valid": data.split("valid")}, meta=data.meta)
    return load_model(train(config, progress=False, data=subset), "cpu")[0], config


def mode_of_draws(draws: torch.Tensor, levels: int) -> torch.Tensor:
    """The most frequent level among draws `[M, N]` per cell -> `[N]` (ties: the lowest level)."""
    counts = torch.nn.functional.one_hot(draws.round().long().clamp(0, levels - 1), levels).sum(0)
    return counts.argmax(-1).to(draws.dtype)


def anyorder_fills(model, holes: torch.Tensor, categorical: np.ndarray, levels: list, draws: int,
                   seed: int, temperature: float = 1.0) -> tuple[dict, dict, torch.Tensor]:
    """({method: fill `[N, D]`}, {method: seconds}, the draws `[M, N, D]`)."""
    fills, seconds = {}, {}
    started = time.perf_counter()
    fills["cmean"] = impute(model, holes, reduce="conditional-mean")
    seconds["cmean"] = time.perf_counter() - started
    started = time.perf_counter()
    sample = impute(model, holes, num_samples=draws, reduce="sample", temperature=temperature,
                    generator=torch.Generator().manual_seed(seed))
    seconds["dmean"] = seconds["dmedian"] = time.perf_counter() - started
    fills["dmean"], fills["dmedian"] = sample.mean(0), sample.median(0).values
    for j in np.flatnonzero(categorical):
        fills["dmean"][:, j] = fills["dmedian"][:, j] = mode_of_draws(sample[:, :, j], len(levels[j]))
    return fills, seconds, sample


def order_quantiles(draws: torch.Tensor, q: float, unbiased: bool) -> torch.Tensor:
    """The q-quantile of draws `[M, ...]` over the first dimension, interpolating between
    order statistics at 0-based place q·(M−1) (numpy's default), or, `unbiased`, at
    q·(M+1)−1: a fresh value falls below the k-th smallest of M exchangeable draws with
    probability k/(M+1), so only the latter covers 90% for a calibrated model at any M
    (the former covers 0.9·(M−1)/(M+1): 86.5% with M = 50)."""
    ordered = draws.sort(0).values
    m = len(draws)
    place = min(max(q * (m + 1) - 1, 0.0), m - 1.0) if unbiased else q * (m - 1)
    low = int(math.floor(place))
    high = min(low + 1, m - 1)
    return ordered[low] + (place - low) * (ordered[high] - ordered[low])


def coverage(truth: torch.Tensor, sample: torch.Tensor, hidden: torch.Tensor, numeric: torch.Tensor,
             unbiased: bool, low: float = 0.05, high: float = 0.95) -> float:
    """Share of hidden numeric cells inside the [low, high] quantiles of their draws `[M, N, D]`."""
    lo, hi = order_quantiles(sample, low, unbiased), order_quantiles(sample, high, unbiased)
    cells = hidden & numeric
    return ((truth >= lo) & (truth <= hi))[cells].double().mean().item()


def interval_coverage(truth: np.ndarray, low: np.ndarray, high: np.ndarray, cells: np.ndarray) -> tuple:
    """Share of the `cells` (bool `[N, D]`) whose truth lies in [low, high] (`[N, D]` each),
    and the share per column (None for a column without such cells)."""
    inside = (truth >= low) & (truth <= high)
    return float(inside[cells].mean()), [float(inside[cells[:, j], j].mean()) if cells[:, j].any() else None
                                         for j in range(truth.shape[1])]


# ---------------------------------------------------------------- AnyOrderImputer

def imputer_fills(imputer, holes: np.ndarray, categorical: np.ndarray, draws: int,
                  self_masking: bool = False, auto: bool = False, lean: bool = False) -> tuple[dict, dict, np.ndarray]:
    """A fitted AnyOrderImputer asked for the masked rows `holes`: ({method: fill},
    {method: transform seconds}, (low, high) 90% bounds from `draws` draws); with
    `self_masking`, also the fills and intervals of missingness="self-masking"; with `auto`,
    those of missingness="auto" (conditional mean) and, under "auto_detected", what its
    test found per column (`detect_self_masking`); where it found nothing, its fills and
    intervals are the default's (identical by construction, tests/test_imputer.py) and are
    copied rather than recomputed. `lean`: only the default, the mean of 20 draws, the
    default intervals and the options asked for (a third of the time on a busy machine)."""
    fills, seconds = {}, {}
    fitted_blend = imputer.blend_        # what the fit prepared ("auto" resolved by the table's size)
    for other in PAIRED_BLENDS[fitted_blend]:           # the same fit's other blends, for paired differences
        name = "imputer_network" if other == "none" else f"imputer_{other}"
        started = time.perf_counter()
        fills[name] = imputer.set_params(reduce="conditional-mean", blend=other,
                                         missingness="random").transform(holes).astype(np.float64)
        seconds[name] = time.perf_counter() - started
    imputer.set_params(blend="auto" if imputer.blend == "auto" else fitted_blend)
    ways = [("imputer", "conditional-mean", "random"), ("imputer_draws", "mean", "random")]
    ways += [("imputer_mnar", "mean", "self-masking")] * self_masking
    found = None
    if auto:
        started = time.perf_counter()
        found = imputer.set_params(missingness="auto").detect_self_masking(holes)
        detect_seconds = time.perf_counter() - started
        imputer.set_params(missingness="random")
        if found["self_masked"].any():
            ways += [("imputer_auto", "conditional-mean", "auto")]
    for name, reduce, missingness in ways:
        started = time.perf_counter()
        fills[name] = imputer.set_params(reduce=reduce, missingness=missingness).transform(holes).astype(np.float64)
        seconds[name] = time.perf_counter() - started
    if found is not None and "imputer_auto" not in fills:
        fills["imputer_auto"], seconds["imputer_auto"] = fills["imputer"], seconds["imputer"] + detect_seconds
    imputer.set_params(missingness="random", num_samples=100)
    if not lean:
        started = time.perf_counter()
        fills["imputer_draws100"] = imputer.transform(holes).astype(np.float64)
        seconds["imputer_draws100"] = time.perf_counter() - started
    imputer.set_params(num_samples=20)
    if categorical.any() and not lean:       # the previous default for categories: the most frequent level of the 20 draws
        started = time.perf_counter()
        from anyorder.frames import decode
        X, values, back = imputer._prepare(holes)
        fill = imputer._reduce_draws(imputer._draws(values, 20, imputer.model_))
        fills["imputer_drawmode"] = np.asarray(back(decode(X, fill, imputer.columns_, np.isnan(values))), np.float64)
        seconds["imputer_drawmode"] = time.perf_counter() - started
    # two estimates of each numeric hole's mean with partly independent errors: the one pass
    # (the model's marginal conditional) and the draws (its chain of conditionals)
    fills["imputer_blend"] = np.where(categorical, fills["imputer_draws"], (fills["imputer"] + fills["imputer_draws"]) / 2)
    seconds["imputer_blend"] = seconds["imputer"] + seconds["imputer_draws"]
    bounds, default = {}, imputer.calibration
    import anyorder.imputer as module
    prior = module.CALIBRATION_PRIOR
    calibrations = (("imputer_pooled", "pooled", prior), ("imputer", "per-column", prior),
                    ("imputer_column0", "per-column", 0))
    for name, calibration, weight in calibrations[1:2] if lean else calibrations:
        module.CALIBRATION_PRIOR = weight       # 0: each column's own held-out levels alone
        low, high = imputer.set_params(calibration=calibration).quantiles(holes, (0.05, 0.95), num_samples=draws)
        bounds[name] = np.stack([np.asarray(low, np.float64), np.asarray(high, np.float64)])
    module.CALIBRATION_PRIOR = prior
    imputer.set_params(calibration=default)
    for name, reduce, missingness in ways[2:]:      # intervals of the weighted draws
        imputer.set_params(calibration=default)
        low, high = imputer.set_params(reduce=reduce, missingness=missingness).quantiles(
            holes, (0.05, 0.95), num_samples=draws)
        bounds[name] = np.stack([np.asarray(low, np.float64), np.asarray(high, np.float64)])
    if found is not None:
        if "imputer_auto" not in bounds:
            bounds["imputer_auto"] = bounds["imputer"]
        bounds["auto_detected"] = {k: [None if isinstance(v, float) and math.isnan(v) else v
                                       for v in np.asarray(found[k]).tolist()] for k in ("self_masked", "p_value")}
    imputer.set_params(reduce="conditional-mean", missingness="random")
    return fills, seconds, bounds


def fit_imputer(params: dict, rows: np.ndarray, categorical: np.ndarray, seed: int):
    """An AnyOrderImputer (`params` over its defaults, random_state=seed) fit on `rows`; its
    fit seconds."""
    from anyorder import AnyOrderImputer
    started = time.perf_counter()
    imputer = AnyOrderImputer(**dict(params, categorical=list(np.flatnonzero(categorical)),
                                     random_state=seed)).fit(rows)
    return imputer, time.perf_counter() - started


def kept_fit(fits: Path | None, table: str, params: dict, rows: np.ndarray, categorical: np.ndarray, seed: int):
    """`fit_imputer`, or with `fits` the imputer pickled there by an earlier run with the same
    table, seed and params, its blend (Gaussian, trees, weights) fitted again by the current
    code (`refresh_blend`): a change to the blend or the calibration is scored without
    training anew."""
    import pickle
    if fits is None:
        return fit_imputer(params, rows, categorical, seed)
    tag = "-".join(f"{k}={v}" for k, v in sorted(params.items()))
    path = fits / f"{table}-{seed}{'-' + tag if tag else ''}.pkl"
    if path.exists():
        with path.open("rb") as f:
            record = pickle.load(f)
        return refresh_blend(record["imputer"], rows), record["fit_seconds"]
    imputer, seconds = fit_imputer(params, rows, categorical, seed)
    fits.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({"imputer": imputer, "fit_seconds": seconds, "load": os.getloadavg()[0]}, f)
    return imputer, seconds


def kept_table_fits(fits: Path, table: str, seeds: int):
    """The benchmark's rows of `table` as `main` takes them (1500 train rows, 250 test rows)
    and, per mask seed 0..seeds-1, the kept fit of the defaults (`kept_fit`): yields (seed,
    imputer, test rows `[N, D]`, categorical `[D]`)."""
    data = load(table, fits / "data")
    categorical = categorical_columns(data)
    train_rows = subsample(data.split("train"), 1500, seed=0).double().numpy()
    truth = data.split("test")[:250].double().numpy()
    for seed in range(seeds):
        imputer, _ = kept_fit(fits, table, {}, train_rows, categorical, seed)
        yield seed, imputer, truth, categorical


def fit_split(imputer, rows: np.ndarray):
    """The train and held-out rows (model units) of an imputer fitted on `rows`, rebuilt as `fit` builds them."""
    from anyorder.data.tables import table_dataset
    from anyorder.frames import encode
    values = encode(rows, imputer.columns_)
    names = [str(c.name) for c in imputer.columns_]
    levels = [[str(v) for v in c.levels] if c.categorical else None for c in imputer.columns_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = table_dataset("X", names, imputer._scores(values), levels, [None] * len(names),
                             imputer.validation_fraction, 0.0, imputer.seed_)
    return data.split("train"), data.splits.get("valid")


def refresh_blend(imputer, rows: np.ndarray):
    """`imputer` (fitted on `rows`, which have no missing cell: holes at 20% as `fit` would
    choose) with its interval calibration, missingness reference and blend fitted again by the
    current code (its discrete columns and atoms found again too, as `fit` finds them)."""
    from anyorder.frames import encode
    from anyorder.imputer import atom_cells, discrete_support
    values = encode(rows, imputer.columns_)
    imputer.discrete_ = discrete_support(values, imputer._numeric())
    imputer.atoms_ = atom_cells(values, imputer._numeric(), imputer.discrete_)
    train, valid = fit_split(imputer, rows)
    imputer._fit_held_out(train, valid, 0.2, len(rows))
    return imputer


def parse_params(items: list[str]) -> dict:
    """KEY=VALUE items -> AnyOrderImputer keyword arguments (values parsed as YAML)."""
    import yaml
    return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items)}


# ---------------------------------------------------------------- baselines

def baseline(name: str, train_rows: np.ndarray, holes: np.ndarray, categorical: np.ndarray,
             seed: int) -> np.ndarray:
    """One baseline's fill of `holes` `[N, D]` (NaN = hidden) given the complete `train_rows`."""
    if name == "mean":
        fill = train_rows.mean(0)
        for j in np.flatnonzero(categorical):
            values, counts = np.unique(train_rows[:, j], return_counts=True)
            fill[j] = values[counts.argmax()]
        return np.where(np.isnan(holes), fill, holes)
    if name == "knn":
        from sklearn.impute import KNNImputer
        return KNNImputer(n_neighbors=5).fit(train_rows).transform(holes)
    if name == "iterative":
        importlib.import_module("sklearn.experimental.enable_iterative_imputer")      # unlocks IterativeImputer
        from sklearn.impute import IterativeImputer
        return IterativeImputer(max_iter=10, random_state=seed).fit(train_rows).transform(holes)
    import pandas as pd
    from hyperimpute.plugins.imputers import Imputers
    options = {"random_state": seed} if name in ("missforest", "hyperimpute", "gain", "miwae") else {}
    plugin = Imputers().get(name, **options)
    stacked = pd.DataFrame(np.vstack([train_rows, holes]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.asarray(plugin.fit_transform(stacked), dtype=np.float64)
    return out[len(train_rows):]


# ---------------------------------------------------------------- report

def mean_se(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    m = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return f"{m:.{digits}f} ± {se:.{digits}f}" if se == se else f"{m:.{digits}f}"


def parse_conditions(items: list[str] | None, masks: list[str], rates: list[float]) -> list[tuple[str, float]]:
    """MASK:RATE items (e.g. mcar:0.5 mar:0.2) -> [(mask, rate)]; None: every --mask at every --rate."""
    if not items:
        return [(m, r) for m in masks for r in rates]
    out = []
    for item in items:
        mask, _, rate = item.partition(":")
        if mask not in MASKS or not rate:
            raise SystemExit(f"--conditions: expected MASK:RATE with MASK one of {', '.join(MASKS)}, got {item!r}")
        out.append((mask, float(rate)))
    return out


def condition_label(mask: str, rate: float) -> str:
    return f"{mask.upper()} {rate:.0%}"


class BaselineCache:
    """Scores of baseline runs already done (HyperImpute takes minutes per imputation), keyed
    by everything that determines them: table, mask, rate, seed, row caps, method. A run
    reads a baseline's scores here instead of recomputing them, and adds the ones it makes."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries = json.loads(path.read_text()) if path is not None and path.exists() else {}

    @staticmethod
    def key(table, mask, rate, seed, args, method) -> str:
        return f"{table}|{mask}|{rate:g}|{seed}|{args.train_rows}|{args.test_rows}|{method}"

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, value: dict) -> None:
        self.entries[key] = value
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.entries, indent=0, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=[*NUMERIC_TABLES, "fair"],
                        choices=[*NUMERIC_TABLES, "fair", *UNSEEN_TABLES],
                        help="fair: the mixed-type table; randhie, diabetes, breast_cancer: tables no "
                             "default was chosen on")
    parser.add_argument("--rates", nargs="+", type=float, default=[0.2, 0.5], help="shares of hidden cells")
    parser.add_argument("--mask", nargs="+", choices=MASKS, default=["mcar"],
                        help="missingness: completely at random, at random (logistic on observed columns), "
                             "not at random (logistic self-masking); every mask at every rate")
    parser.add_argument("--conditions", nargs="+", metavar="MASK:RATE",
                        help="the (mask, rate) pairs to run instead of --mask x --rates, e.g. mcar:0.2 mar:0.2")
    parser.add_argument("--imputer", nargs="*", default=[], metavar="KEY=VALUE",
                        help="AnyOrderImputer parameters for --methods imputer, e.g. max_time=60 width=512")
    parser.add_argument("--self-masking", action="store_true",
                        help="also score AnyOrderImputer(missingness='self-masking') (the mechanism estimated "
                             "on the masked test rows; meant for --mask mnar)")
    parser.add_argument("--auto", action="store_true",
                        help="also score AnyOrderImputer(missingness='auto') (self-masking where its per-column Wald "
                             "test finds it) and record what its test found")
    parser.add_argument("--lean", action="store_true",
                        help="AnyOrderImputer: score only the default, the mean of 20 draws, the default intervals "
                             "and --self-masking / --auto")
    parser.add_argument("--seeds", type=int, default=3, help="mask seeds F..F+S-1 (and the imputer's random_state)")
    parser.add_argument("--first-seed", type=int, default=0, help="F: the first mask seed")
    parser.add_argument("--methods", nargs="+", default=["imputer", "anyorder", *BASELINES],
                        choices=["imputer", "anyorder", *BASELINES])
    parser.add_argument("--only", nargs="*", default=[], metavar="TABLE:METHOD",
                        help="run METHOD on TABLE only (e.g. fair:missforest: the slow baselines on one table)")
    parser.add_argument("--train-rows", type=int, default=1500,
                        help="train rows every method sees (seeded subsample; 0 = all)")
    parser.add_argument("--test-rows", type=int, default=250, help="test rows to mask and impute (0 = all)")
    parser.add_argument("--preset", default="table-impute-cpu", help="anyorder preset (data is replaced)")
    parser.add_argument("--steps", type=int, help="anyorder training steps (default: the preset's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more anyorder config overrides, e.g. model.strategy=mac net.width=512")
    parser.add_argument("--draws", type=int, default=100, help="anyorder draws per row (mean, median, intervals)")
    parser.add_argument("--temperature", type=float, default=1.0, help="anyorder sampling temperature of the draws")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "imputation.md")
    parser.add_argument("--cache", type=Path, default=HERE / "results" / "imputation-baselines.json",
                        help="baseline scores already measured (read, and extended); 'none' for no cache")
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "imputation")
    parser.add_argument("--fits", type=Path, default=None,
                        help="keep each fitted AnyOrderImputer here as a pickle and reuse it on a rerun, its blend "
                             "refitted by the current code (training is the slow part; the blend is seconds)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 train, 100 test rows, 100 steps, 1 seed")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="write one report (--out) from the .json records of earlier runs, then stop")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.threads:        # joblib's n_jobs=-1 inside the baselines: no more workers than threads
        os.environ.setdefault("LOKY_MAX_CPU_COUNT", str(args.threads))
    if args.merge:
        report = render([json.loads(path.read_text()) for path in args.merge])
        args.out.write_text(report)
        print(report + f"\nwrote {args.out}")
        return
    if args.quick:
        args.train_rows, args.test_rows, args.seeds = min(args.train_rows or 600, 600), min(args.test_rows or 100, 100), 1
        args.steps, args.draws = args.steps or 100, min(args.draws, 20)
        args.cache = Path("none")
    cache = BaselineCache(None if str(args.cache) == "none" else args.cache)
    conditions = parse_conditions(args.conditions, args.mask, args.rates)
    only = [item.partition(":")[::2] for item in args.only]
    overrides = ([f"train.steps={args.steps}", f"optim.warmup={min(100, args.steps // 5)}",
                  f"train.eval_every={args.steps}", f"train.ckpt_every={args.steps}"] if args.steps else [])
    overrides += args.set
    header = machine(torch.device("cpu"))
    print(header, flush=True)

    results = {}        # (table, condition, method) -> {"nrmse": [...], "accuracy": [...], "seconds": [...]}
    notes, checks, trained = [], [], {}
    for table in args.tables:
        data = load(table, args.runs / "data")
        categorical = categorical_columns(data)
        levels = data.meta.get("levels") or [None] * data.dim
        train_rows = subsample(data.split("train"), args.train_rows, seed=0)
        test_rows = data.split("test")[: args.test_rows or None]
        notes.append(f"{table}: D={data.dim} ({int(categorical.sum())} categorical), {len(train_rows)} of "
                     f"{len(data.split('train'))} train rows, {len(test_rows)} of {len(data.split('test'))} test rows")
        print(notes[-1], flush=True)
        model = None
        if "anyorder" in args.methods:
            started = time.perf_counter()
            model, config = train_anyorder(data, train_rows, args.preset, overrides, args.runs / table)
            trained[table] = (time.perf_counter() - started, config.train.steps)
            print(f"  anyorder {args.preset}: {config.train.steps} steps in {trained[table][0]:.0f} s", flush=True)
        truth = test_rows.double().numpy()
        methods = [m for m in args.methods if not any(m == method and t != table for t, method in only)]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            imputer = None
            if "imputer" in methods:        # one fit per seed on the train rows answers every condition
                imputer, fit_seconds = kept_fit(args.fits, table, parse_params(args.imputer),
                                                train_rows.double().numpy(), categorical, seed)
                print(f"  AnyOrderImputer seed {seed}: {imputer.n_steps_} steps, fit {fit_seconds:.1f} s", flush=True)
            for mask, rate in conditions:
                cond = condition_label(mask, rate)
                hidden = make_mask(mask, truth, rate, seed)
                holes = np.where(hidden, np.nan, truth)
                fills, seconds = {}, {}
                if model is not None:
                    got, took, sample = anyorder_fills(model, torch.from_numpy(holes).float(), categorical,
                                                       levels, args.draws, seed, args.temperature)
                    fills.update({k: v.double().numpy() for k, v in got.items()})
                    seconds.update(took)
                    for unbiased in (False, True):
                        cover = coverage(test_rows, sample, torch.from_numpy(hidden),
                                         torch.from_numpy(~categorical), unbiased)
                        results.setdefault((table, cond, "coverage"), {}).setdefault(
                            "unbiased" if unbiased else "linear", []).append(cover)
                if imputer is not None:
                    got, took, bounds = imputer_fills(imputer, holes, categorical, args.draws, args.self_masking,
                                                       args.auto, args.lean)
                    fills.update(got)
                    seconds.update({k: v + fit_seconds for k, v in took.items()})
                    cells = hidden & ~categorical[None]
                    detected = bounds.pop("auto_detected", None)
                    if detected is not None:
                        for key, value in detected.items():
                            results.setdefault((table, cond, "auto_detected"), {}).setdefault(key, []).append(value)
                    for kind, bound in bounds.items():
                        overall, by_column = interval_coverage(truth, bound[0], bound[1], cells)
                        results.setdefault((table, cond, "coverage"), {}).setdefault(kind, []).append(overall)
                        results.setdefault((table, cond, "coverage_by_column"), {}).setdefault(kind, []).append(
                            by_column)
                    results.setdefault((table, cond, "imputer"), {}).setdefault("steps", []).append(imputer.n_steps_)
                reference = baseline("mean", train_rows.double().numpy(), holes, categorical, seed)
                for name in (m for m in methods if m not in ("anyorder", "imputer")):
                    key = cache.key(table, mask, rate, seed, args, name)
                    s = cache.get(key)
                    cached = s is not None
                    if not cached:
                        started = time.perf_counter()
                        filled = snap_levels(baseline(name, train_rows.double().numpy(), holes, categorical, seed),
                                             categorical, levels)
                        s = scores(truth, filled, hidden, categorical)
                        s["seconds"] = time.perf_counter() - started
                        num = hidden & ~categorical[None]
                        s["gap"] = float(np.sqrt(np.mean((filled[num] - reference[num]) ** 2)))
                        s["load"] = os.getloadavg()[0]
                        cache.put(key, s)
                    print(f"    {LABELS[name]}: {s['seconds']:.1f} s" + (" (cached)" if cached else ""),
                          flush=True)
                    record(results, checks, table, cond, seed, name, s)
                for name, filled in fills.items():
                    s = scores(truth, filled, hidden, categorical)
                    s["seconds"] = seconds[name]
                    num = hidden & ~categorical[None]
                    s["gap"] = float(np.sqrt(np.mean((filled[num] - reference[num]) ** 2)))
                    record(results, checks, table, cond, seed, name, s)
                save(args, header, notes, results, trained, checks, overrides)
                line = ", ".join(f"{n} {results[(table, cond, n)].get('nrmse', [float('nan')])[-1]:.3f}"
                                 for n in methods if (table, cond, n) in results)
                print(f"  {table} {cond} seed {seed}: {line}", flush=True)

    print("\n" + save(args, header, notes, results, trained, checks, overrides))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


def record(results: dict, checks: list, table: str, cond: str, seed: int, name: str, s: dict) -> None:
    for key in ("nrmse", "accuracy", "seconds", "bias"):
        if key in s:
            results.setdefault((table, cond, name), {}).setdefault(key, []).append(s[key])
    if name != "mean" and "gap" in s:
        checks.append((table, cond, seed, name, s["gap"]))


def save(args, header, notes, results, trained, checks, overrides) -> str:
    """Write the report and its JSON record so far (after every condition and seed, so a run
    cut short keeps what it measured); returns the report."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"header": header, "notes": notes, "results": [[*k, v] for k, v in results.items()],
              "trained": trained, "checks": checks,
              "settings": {"seeds": args.seeds, "draws": args.draws, "temperature": args.temperature,
                           "imputer": " ".join(args.imputer), "preset": " ".join([args.preset, *overrides])}}
    args.out.with_suffix(".json").write_text(json.dumps(record))
    report = render([record])
    args.out.write_text(report)
    return report


def render(records: list[dict]) -> str:
    """The markdown report of one or more runs' records (runs over different tables, e.g.
    in parallel processes, merge into one report with --merge)."""
    header = "; ".join(dict.fromkeys(r["header"] for r in records))
    notes = list(dict.fromkeys(n for r in records for n in r["notes"]))
    results = {}        # runs over other seeds of the same table and condition add their figures
    for r in records:
        for *key, values in r["results"]:
            for name, figures in values.items():
                results.setdefault(tuple(key), {}).setdefault(name, []).extend(figures)
    trained = {t: v for r in records for t, v in r["trained"].items()}
    checks = [tuple(c) for r in records for c in r["checks"]]
    settings = records[0]["settings"]
    order = [condition_label(m, r) for m in MASKS for r in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    conditions = sorted({k[1] for k in results}, key=lambda c: (order.index(c) if c in order else len(order), c))
    tables = sorted({t for t, _, _ in results}, key=[*NUMERIC_TABLES, "fair", *UNSEEN_TABLES].index)
    methods = [m for m in LABELS if any((t, c, m) in results for t in tables for c in conditions)]
    lines = ["# Table imputation: anyorder vs standard imputers", "", header, "",
             "Mask seeds per figure: the n columns; mean ± standard error over seeds; "
             f"AnyOrderImputer `{settings.get('imputer') or 'defaults'}`, fit once per seed on the train rows "
             f"(random_state = the seed); anyorder `{settings['preset']}`, {settings['draws']} draws per row at "
             f"temperature {settings.get('temperature', 1.0):g}. Baselines impute [train rows; masked test rows]. "
             "Times are wall seconds per imputation (fit included) on a shared, busy machine.", ""]
    lines += [f"- {n}" for n in notes]
    lines += [f"- anyorder on {t}: trained {steps} steps in {s:.0f} s" for t, (s, steps) in trained.items()]
    for cond in conditions:
        lines += ["", f"## {cond} of test cells hidden", "",
                  "NRMSE on hidden numeric cells (lower is better; n = seeds); accuracy on hidden categorical "
                  "cells (fair); seconds per imputation.", ""]
        columns = []
        for t in tables:
            columns += [f"{t} NRMSE", "n", f"{t} s"] + (["fair accuracy"] if t == "fair" else [])
        lines += ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        best = {t: min((np.mean(results[(t, cond, m)]["nrmse"]), m) for m in methods
                       if "nrmse" in results.get((t, cond, m), {}))[1] for t in tables
                if any("nrmse" in results.get((t, cond, m), {}) for m in methods)}
        for m in methods:
            if not any((t, cond, m) in results for t in tables):
                continue
            cells = []
            for t in tables:
                r = results.get((t, cond, m), {})
                score = mean_se(r.get("nrmse", []))
                cells += [f"**{score}**" if best.get(t) == m else score, str(len(r.get("nrmse", []))),
                          mean_se(r.get("seconds", []), 1)]
                if t == "fair":
                    cells.append(mean_se(r.get("accuracy", [])))
            lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
        kinds = [k for k in ("linear", "unbiased", "imputer", "imputer_pooled", "imputer_column200", "imputer_column0",
                             "imputer_mnar", "imputer_auto") if any(results.get((t, cond, "coverage"), {}).get(k)
                                                                     for t in tables)]
        if kinds:
            lines += ["", "Coverage of 90% intervals (5% and 95% quantiles of the draws) on hidden numeric cells, "
                      "target 0.88–0.92 (anyorder preset: quantiles at numpy's places q·(M−1) and at the "
                      "unbiased places q·(M+1)−1, `order_quantiles`; imputer: `AnyOrderImputer.quantiles`):", ""]
            for kind in kinds:
                cover = [mean_se(results.get((t, cond, "coverage"), {}).get(kind, [])) for t in tables]
                lines.append(f"- {kind}: " + ", ".join(f"{t} {c}" for t, c in zip(tables, cover)))
    if checks:
        lines += ["", "## Check against the column mean", "",
                  "RMS distance (standardised units) between each method's fill and the column-mean fill on "
                  "the hidden numeric cells, smallest over tables, conditions and seeds; a method near 0 is "
                  "returning the column mean.", ""]
        smallest = {}
        for t, c, s, name, gap in checks:
            if name not in smallest or gap < smallest[name][0]:
                smallest[name] = (gap, f"{t} {c} seed {s}")
        lines += [f"- {LABELS[n]}: {g:.3f} ({where})" + ("  **≈ column mean: do not trust**" if g < 0.05 else "")
                  for n, (g, where) in smallest.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
