"""Gradient-boosted trees per numeric column: a second, non-network candidate for the imputer's fills.

A network trained for a minute on a thousand rows and a Gaussian are two estimates of a
hidden cell's conditional mean; trees grown on the same rows (HyperImpute's imputers pick
boosted trees for most columns) make errors of their own, so a blend of the three fills
better than either network or Gaussian (`anyorder.gaussian_blend.blend_weights`). Each
numeric column j gets scikit-learn's HistGradientBoostingRegressor predicting x_j from the
other columns, trained on the rows with x_j observed in several copies, each with the other
cells hidden at random at the rate the imputer expects (the trees route a missing value to
the side learned for it, so a row's holes need no fill first: one pass, no chaining). Each
copy is another pattern of holes to learn the routes from; a table of 1350 rows in 4 or 8
copies instead of 2 filled MAGIC and house_16H better (trees alone 0.03 NRMSE, the stack
0.01), so small tables get more copies, up to SAMPLES masked rows (`copies`), and a large
one keeps 2, which holds the fit's time.

The fitted trees are kept as plain arrays (feature, threshold, missing-goes-left, children,
leaf value) and evaluated here in numpy, so a saved imputer needs no scikit-learn of a
particular version to load, and its JSON holds no pickled object.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

COPIES = (2, 8)         # fewest and most masked copies of the training rows per column's trees
SAMPLES = 8000          # masked rows the copies aim for (small tables get more copies, `copies`)
ITERATIONS = 100        # boosting rounds per column
LEAVES = 31             # leaves per tree (scikit-learn's default)
FIELDS = ("feature", "threshold", "missing_left", "left", "right", "leaf", "value", "depth")
CLASSIFIER_FIELDS = ("classes", "base")     # a categorical column's level ids and baseline scores


class BoostedFill:
    """Per numeric column (`numeric`: bool `[D]`), a baseline and an ensemble of regression
    trees in `trees[j]`: a dict of int/float arrays `[T, nodes]` (padded), or None for a column
    with no trees (too few observed cells: filled with its baseline). Per categorical column,
    a classifier's trees in the same form plus "classes" (the level ids it saw) and "base"
    (its baseline scores, one per ensemble: one for two classes, one per class above), the
    trees of boosting round i and ensemble k at row i K' + k; None where it has none."""

    def __init__(self, numeric: np.ndarray, baseline: np.ndarray, trees: list):
        self.numeric, self.baseline, self.trees = np.asarray(numeric, bool), np.asarray(baseline, float), trees

    @classmethod
    def fit(cls, rows: np.ndarray, numeric: np.ndarray, rate: float, seed: int,
            iterations: int = ITERATIONS, threads: int | None = 1) -> "BoostedFill":
        """Trees for each column of `rows` `[N, D]` (model units, NaN where missing; categorical
        columns, `~numeric`, hold level ids): regression trees for the numeric ones, a
        classifier's for the categorical ones."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits
        numeric = np.asarray(numeric, bool)
        rows = np.asarray(rows, np.float64)
        generator = np.random.default_rng(seed)
        count = copies(len(rows))
        masked = np.concatenate([np.where(generator.random(rows.shape) < rate, np.nan, rows) for _ in range(count)])
        target = np.tile(rows, (count, 1))
        baseline, trees = np.zeros(rows.shape[1]), [None] * rows.shape[1]
        for j in range(rows.shape[1]):
            seen = ~np.isnan(target[:, j])
            if seen.sum() < 20 or (not numeric[j] and len(np.unique(target[seen, j])) < 2):
                if numeric[j]:
                    baseline[j] = np.nanmean(rows[:, j]) if (~np.isnan(rows[:, j])).any() else 0.0
                continue
            kind = HistGradientBoostingRegressor if numeric[j] else HistGradientBoostingClassifier
            model = kind(max_iter=iterations, max_leaf_nodes=LEAVES, early_stopping=False, random_state=seed)
            with threadpool_limits(threads):
                model.fit(np.delete(masked[seen], j, 1), target[seen, j] if numeric[j] else target[seen, j].astype(np.int64))
            if numeric[j]:
                baseline[j], trees[j] = tree_arrays(model)
            else:
                trees[j] = classifier_arrays(model)
        return cls(numeric, baseline, trees)

    def predict(self, rows: np.ndarray, column: int) -> np.ndarray:
        """Numeric column `column`'s prediction `[N]` from the other cells of `rows` `[N, D]` (NaN allowed)."""
        out = np.full(len(rows), self.baseline[column])
        tree = self.trees[column]
        if tree is None or not len(rows):
            return out
        return out + self._leaf_values(rows, column).sum(1)

    def probabilities(self, rows: np.ndarray, column: int, levels: int) -> np.ndarray | None:
        """Categorical column `column`'s level probabilities `[N, levels]` from the other cells
        of `rows` (levels the classifier never saw get 0), or None without a classifier:
        softmax of the per-class scores (a logistic of the one score for two classes), as
        scikit-learn's predict_proba."""
        tree = self.trees[column]
        if tree is None or "classes" not in tree:
            return None
        base = np.asarray(tree["base"], np.float64)
        scores = base + self._leaf_values(rows, column).reshape(len(rows), -1, len(base)).sum(1)     # [N, K']
        if len(base) == 1:
            top = 1 / (1 + np.exp(-scores[:, 0]))
            known = np.stack([1 - top, top], 1)
        else:
            shifted = np.exp(scores - scores.max(1, keepdims=True))
            known = shifted / shifted.sum(1, keepdims=True)
        out = np.zeros((len(rows), levels))
        out[:, np.asarray(tree["classes"], np.int64)] = known
        return out

    def _leaf_values(self, rows: np.ndarray, column: int) -> np.ndarray:
        """Every tree's leaf value `[N, T]` for the rows `[N, D]`, column `column`'s trees walked
        on the other cells (a missing value goes the way its split learned)."""
        tree = self.trees[column]
        x = np.delete(np.asarray(rows, np.float64), column, 1)
        count = tree["feature"].shape[0]
        node = np.zeros((len(rows), count), dtype=np.int64)          # every row at every tree's root
        which = np.arange(count)
        for _ in range(tree["depth"]):
            leaf = tree["leaf"][which, node]
            feature = tree["feature"][which, node]
            value = np.take_along_axis(x, feature, 1)
            left = np.where(np.isnan(value), tree["missing_left"][which, node], value <= tree["threshold"][which, node])
            step = np.where(left, tree["left"][which, node], tree["right"][which, node])
            node = np.where(leaf, node, step)
        return tree["value"][which, node]

    def fill(self, rows: np.ndarray) -> np.ndarray:
        """`rows` `[N, D]` with each missing numeric cell set to its column's prediction."""
        rows = np.asarray(rows, np.float64)
        out = rows.copy()
        for j in np.flatnonzero(self.numeric):
            holes = np.isnan(rows[:, j])
            if holes.any():
                out[holes, j] = self.predict(rows[holes], j)
        return out

    def save(self, path) -> None:
        """Write the trees as a safetensors file (arrays only; nothing executable)."""
        from safetensors.numpy import save_file
        arrays = {"numeric": self.numeric.astype(np.uint8), "baseline": self.baseline}
        for j, tree in enumerate(self.trees):
            for key, value in (tree or {}).items():
                value = np.atleast_1d(np.asarray(value))
                arrays[f"{j}.{key}"] = value.astype(np.uint8) if value.dtype == bool else value
        save_file(arrays, str(path))

    @classmethod
    def load(cls, path) -> "BoostedFill":
        from safetensors.numpy import load_file
        arrays = load_file(str(path))
        numeric = arrays["numeric"].astype(bool)
        trees = []
        for j in range(len(numeric)):
            if f"{j}.depth" not in arrays:
                trees.append(None)
                continue
            tree = {key: arrays[f"{j}.{key}"] for key in FIELDS + CLASSIFIER_FIELDS if f"{j}.{key}" in arrays}
            tree.update({"missing_left": tree["missing_left"].astype(bool), "leaf": tree["leaf"].astype(bool),
                         "depth": int(tree["depth"].reshape(-1)[0])})
            trees.append(tree)
        return cls(numeric, arrays["baseline"], trees)


def copies(rows: int) -> int:
    """Masked copies of `rows` training rows: enough for SAMPLES masked rows, within COPIES."""
    return int(np.clip(-(-SAMPLES // max(rows, 1)), *COPIES))


def tree_arrays(model) -> tuple[float, dict]:
    """A fitted HistGradientBoostingRegressor (numeric features) -> (its baseline prediction,
    its trees as padded arrays `[T, M]` plus the deepest leaf's depth, the steps `predict` walks).
    scikit-learn keeps both only in private attributes (`_baseline_prediction`, `_predictors`
    and each tree's `nodes` records; no public attribute or method gives them in 1.6-1.9), so
    a version that renames them gives a one-line UserError that says so, not a traceback."""
    with _private_attributes(model):
        return float(np.ravel(model._baseline_prediction)[0]), _pack([p[0].nodes for p in model._predictors])


def classifier_arrays(model) -> dict:
    """A fitted HistGradientBoostingClassifier -> its trees as `tree_arrays` packs them, round
    by round and within a round ensemble by ensemble (one ensemble for two classes, one per
    class above), plus its "classes" (level ids) and "base" (baseline score per ensemble)."""
    with _private_attributes(model):
        trees = _pack([p.nodes for round_ in model._predictors for p in round_])
        trees.update(classes=np.asarray(model.classes_, np.int64),
                     base=np.ravel(np.asarray(model._baseline_prediction, np.float64)))
        return trees


class _private_attributes:
    """Turns a missing or renamed private attribute of a fitted scikit-learn tree model into
    a one-line UserError (see `tree_arrays`)."""

    def __init__(self, model):
        self.name = type(model).__name__

    def __enter__(self):
        return self

    def __exit__(self, kind, err, traceback):
        if kind is None or not issubclass(kind, (AttributeError, IndexError, KeyError, ValueError)):
            return False
        from sklearn import __version__
        raise UserError(f'blend="stack" reads the trees of scikit-learn\'s {self.name} from '
                        f'private attributes of scikit-learn 1.6-1.9 that {__version__} lacks '
                        f'({str(err).splitlines()[0]}): use blend="gaussian", or scikit-learn 1.6-1.9') from None


def _pack(nodes: list) -> dict:
    """scikit-learn's tree records (one structured array per tree) -> padded arrays."""
    size = max(len(n) for n in nodes)

    def pad(field, dtype, fill):
        out = np.full((len(nodes), size), fill, dtype=dtype)
        for i, n in enumerate(nodes):
            out[i, :len(n)] = n[field]
        return out
    return {"feature": pad("feature_idx", np.int64, 0), "threshold": pad("num_threshold", np.float64, 0.0),
            "missing_left": pad("missing_go_to_left", bool, True), "left": pad("left", np.int64, 0),
            "right": pad("right", np.int64, 0), "leaf": pad("is_leaf", bool, True),
            "value": pad("value", np.float64, 0.0), "depth": int(max(n["depth"].max() for n in nodes))}
