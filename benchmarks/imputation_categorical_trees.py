"""fair's categorical holes: the network's class probabilities averaged with boosted trees' (an experiment, not in the package).

For each kept fit of fair (`imputation.py --fits DIR`, seeds 0-4) and each of MCAR 20%,
MCAR 50% and MAR 20% (the benchmark's masks), the accuracy on the hidden categorical cells of
the argmax of: the network's softmax with its last weights ("net", what the imputer fills),
averaged with its best-held-out weights' ("ae"), a HistGradientBoostingClassifier per column
fitted on 6 masked copies of the train rows at 20% holes ("trees"), and the means of the
three ("aet") or of net and trees ("at"). One JSON line per seed and condition.

    python benchmarks/imputation_categorical_trees.py --fits runs/fits
"""

import argparse
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

import imputation as bench


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=Path, required=True)
    args = parser.parse_args()
    data = bench.load("fair", args.fits / "data")
    rows_all = bench.subsample(data.split("train"), 1500, seed=0).double().numpy()
    truth = data.split("test")[:250].double().numpy()
    for seed in range(5):
        imp = pickle.load((args.fits / f"fair-{seed}.pkl").open("rb"))["imputer"]
        train, valid = bench.fit_split(imp, rows_all)
        tr = train.double().numpy()
        cats = np.flatnonzero(~imp._numeric())
        g = np.random.default_rng(seed)
        copies = 6
        masked = np.concatenate([np.where(g.random(tr.shape) < 0.2, np.nan, tr) for _ in range(copies)])
        target = np.tile(tr, (copies, 1))
        clf = {}
        for j in cats:
            m = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed)
            with threadpool_limits(1):
                m.fit(np.delete(masked, j, 1), target[:, j].astype(int))
            clf[j] = m
        for cond in ("mcar:0.2", "mcar:0.5", "mar:0.2"):
            mask, _, rate = cond.partition(":")
            hidden = bench.make_mask(mask, truth, float(rate), seed)
            q = imp._model_units(np.where(hidden, np.nan, truth))
            qt = torch.from_numpy(q).float(); obs = ~torch.isnan(qt); x = torch.where(obs, qt, 0.0)
            probs = {}
            for name, model in (("a", imp.model_), ("e", imp.draws_model_)):
                with torch.no_grad():
                    params = model(x, obs)
                head = model.head
                logits = head._logits(params, head._sizes(params[..., 0], None))
                probs[name] = torch.softmax(logits, -1).double().numpy()     # [N, D, K]
            res = {"seed": seed, "cond": cond}
            cells_total = {k: [] for k in ("net", "ae", "trees", "aet", "at")}
            for j in cats:
                h = hidden[:, j]
                if not h.any(): continue
                t = truth[h, j]
                pt = np.zeros((h.sum(), probs["a"].shape[-1]))
                pt[:, clf[j].classes_] = clf[j].predict_proba(np.delete(q[h], j, 1))
                pa, pe = probs["a"][h, j], probs["e"][h, j]
                for k, p in (("net", pa), ("ae", (pa + pe) / 2), ("trees", pt), ("aet", (pa + pe + pt) / 3), ("at", (pa + pt) / 2)):
                    cells_total[k].extend((p.argmax(1) == t).tolist())
            for k, v in cells_total.items():
                res[k] = round(float(np.mean(v)), 4)
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
