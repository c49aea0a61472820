"""The boosted trees of blend="stack" grown on more masked copies, scored on kept fits (paired).

Each kept fit (a pickle of `imputation_accuracy.py --fits`: the imputer, the test rows and
their 20% MCAR mask) keeps its network; only the trees are grown again, here with 2, 4 or 8
masked copies of the training rows (`anyorder.boosted_fill.copies` now picks as many as make
8000 rows, 2 to 8), with a smaller learning rate, or with the network's one-pass fill of the
other holes as extra inputs ("netfill"). Printed per fit: the stack's NRMSE with each
variant (the mean of network, best-held-out weights and trees, blended with the Gaussian as
the imputer does) and the trees' own ("_alone").

    python benchmarks/imputation_tree_copies.py runs/imputation-accuracy/magic-0.pkl ...   # one JSON line per fit
"""
import json
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch
import imputation as bench
import imputation_accuracy as accuracy
from anyorder.gaussian_blend import GaussianFill, blend_weights, significant_weights
from anyorder.impute import impute
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)

def fit_trees(rows, numeric, rate, seed, copies=2, iters=100, lr=0.1, leaves=31, filler=None):
    g = np.random.default_rng(seed)
    masked = np.concatenate([np.where(g.random(rows.shape) < rate, np.nan, rows) for _ in range(copies)])
    target = np.tile(rows, (copies, 1))
    inputs = masked if filler is None else np.hstack([masked, filler(masked)])
    models = {}
    for j in np.flatnonzero(numeric):
        seen = ~np.isnan(target[:, j])
        m = HistGradientBoostingRegressor(max_iter=iters, learning_rate=lr, max_leaf_nodes=leaves, early_stopping=False, random_state=seed)
        X = inputs[seen]
        X = np.delete(X, [j] + ([rows.shape[1] + j] if filler is not None else []), 1)
        with threadpool_limits(1):
            m.fit(X, target[seen, j])
        models[j] = m
    def predict(q):
        out = np.array(q, float)
        inp = q if filler is None else np.hstack([q, filler(q)])
        for j, m in models.items():
            h = np.isnan(q[:, j])
            if h.any():
                X = np.delete(inp[h], [j] + ([q.shape[1] + j] if filler is not None else []), 1)
                out[h, j] = m.predict(X)
        return out
    return predict

def main() -> None:
    for path in sys.argv[1:]:
        d = pickle.load(open(path, "rb"))
        imp, truth, hidden, cat = d["imputer"], d["truth"], d["hidden"], d["categorical"]
        table, seed = os.path.basename(path)[:-4].rsplit("-", 1)
        numeric = imp._numeric()
        train, valid = accuracy.split(imp, d.get("train_rows"))
        rate = 0.2
        rows, held, copies, _ = imp._masked_held_out(valid, rate, imp.seed_ + 2)
        vt, vh = rows.double().numpy(), held.numpy()
        vq = np.where(vh, np.nan, vt)
        tq = imp._model_units(np.where(hidden, np.nan, truth))
        tr = train.double().numpy()
        gauss = GaussianFill.fit(tr, numeric)
        floor = imp._floor()
        def net(q, model=None):
            return impute(model or imp.model_, torch.from_numpy(q).float(), reduce="conditional-mean", floor=floor).double().numpy()
        va, ve, ta, te = net(vq), net(vq, imp.draws_model_), net(tq), net(tq, imp.draws_model_)
        vg, tg = gauss.fill(vq), gauss.fill(tq)
        def score(fill):
            f = imp._file_units(torch.from_numpy(np.where(numeric, fill, ta)))
            return bench.scores(truth, np.where(hidden, f, truth), hidden, cat)["nrmse"]
        def stack(vtr, ttr):
            vm, tm = (va + ve + vtr) / 3, (ta + te + ttr) / 3
            w = significant_weights(vt, vm, vg, vh, blend_weights(vt, vm, vg, vh))
            return score(tg + w * (tm - tg))
        res = {"table": table, "seed": int(seed)}
        def filler(q):          # the network's one-pass fill of the holes
            return np.where(np.isnan(q), net(q), q)
        variants = {"v0": {}, "copies4": {"copies": 4}, "copies8": {"copies": 8}, "lr05_200": {"lr": 0.05, "iters": 200},
                    "netfill": {"filler": filler}, "c4_netfill": {"copies": 4, "filler": filler}}
        for name, kw in variants.items():
            p = fit_trees(tr, numeric, rate, imp.seed_, **kw)
            res[name] = stack(p(vq), p(tq)); res[name + "_alone"] = score(p(tq))
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}), flush=True)


if __name__ == "__main__":
    main()
