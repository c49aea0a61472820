"""The levers of AnyOrderImputer's point fills at 20% MCAR, paired within each fit and against HyperImpute.

For each table and seed, AnyOrderImputer is fitted exactly as benchmarks/imputation.py fits
it (the same seeded 1500 train rows, random_state = the seed, the defaults; fits are kept
in --fits as pickles, so that a rerun re-scores them without training again), the same
250 test rows get the same MCAR mask, and every fill below is scored from that one fit
(NRMSE on the hidden numeric cells, ACE's definition):

  stack               blend="stack": mean of the network (last weights), the network (best
                      held-out weights) and boosted trees, Gaussian where significant
  gaussian            blend="gaussian" (the default): g + w (a - g)
  network             blend="none": a, the network's one pass
  trees, snapshot     the trees alone, the best-held-out weights' one pass alone
  draws               the mean of --draws joint draws of the network
  mean(a, trees)      the network and the trees, half each
  mean(a, trees, draws), mean(a, snapshot, trees, draws)
  stacked NNLS        per column non-negative weights summing to 1 on (a, g, trees), least
                      squares on the held-out rows (masked as the blend's weights are)
  per-column choice   per column the one of (a, g, trees) with the least held-out error

HyperImpute's scores are read from the baseline caches that benchmarks/imputation.py wrote
(the same tables, masks and rows); differences are paired by seed, mean ± SE over seeds.

    python benchmarks/imputation_accuracy.py --tables magic house_16H fair houses --seeds 3
    python benchmarks/imputation_accuracy.py --tables breast_cancer diabetes randhie --seeds 3 \\
        --out benchmarks/results/imputation-accuracy-unseen.md

Needs the [imputation] extra (statsmodels for fair and randhie). One thread; each fit takes
its 75 CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

import imputation as bench
from anyorder.impute import impute

HERE = Path(__file__).resolve().parent
CACHES = [HERE / "results" / "imputation-baselines.json", HERE / "results" / "imputation-baselines-unseen.json"]
RATE = 0.2
LABELS = {"stack": "stack (default)", "gaussian": "gaussian (previous default)", "network": "network alone",
          "trees": "trees alone", "snapshot": "best-held-out weights alone", "draws": "mean of draws",
          "m_ab": "mean(network, trees)", "m_abd": "mean(network, trees, draws)",
          "m_aebd": "mean(network, snapshot, trees, draws)", "nnls": "stacked NNLS (network, Gaussian, trees)",
          "choice": "per-column choice (network, Gaussian, trees)", "hyperimpute": "HyperImpute"}


def fitted(table: str, seed: int, fits: Path):
    """{imputer, truth, hidden, categorical, fit_seconds, load[, train_rows]} for one table and
    seed: the pickle in `fits`, or a new fit (then pickled there)."""
    path = fits / f"{table}-{seed}.pkl"
    if path.exists():
        with path.open("rb") as f:
            d = pickle.load(f)
        return d
    data = bench.load(table, fits / "data")
    categorical = bench.categorical_columns(data)
    train_rows = bench.subsample(data.split("train"), 1500, seed=0)
    truth = data.split("test")[:250].double().numpy()
    hidden = bench.make_mask("mcar", truth, RATE, seed)
    imputer, seconds = bench.fit_imputer({}, train_rows.double().numpy(), categorical, seed)
    fits.mkdir(parents=True, exist_ok=True)
    record = {"imputer": imputer, "truth": truth, "hidden": hidden, "categorical": categorical,
              "fit_seconds": seconds, "load": os.getloadavg()[0], "train_rows": train_rows.double().numpy()}
    with path.open("wb") as f:
        pickle.dump(record, f)
    return record


def split(imputer, train_rows: np.ndarray | None):
    """The fit's own train and held-out rows (model units), rebuilt as `fit` builds them."""
    if hasattr(imputer, "_train_rows"):         # pickles of the first runs kept them
        return imputer._train_rows, imputer._valid_rows
    return bench.fit_split(imputer, train_rows)


def candidates(imputer, rows: np.ndarray, draws: int) -> dict:
    """Each estimate of the holes of `rows` (model units, NaN = hidden) -> `[N, D]`."""
    query = torch.from_numpy(rows).float()
    floor = imputer._floor()
    out = {"network": impute(imputer.model_, query, reduce="conditional-mean", floor=floor).double().numpy(),
           "snapshot": impute(imputer.draws_model_, query, reduce="conditional-mean", floor=floor).double().numpy(),
           "g": imputer.gaussian_.fill(rows), "trees": imputer.trees_.fill(rows)}
    if draws:
        generator = torch.Generator().manual_seed(imputer.seed_)
        out["draws"] = impute(imputer.model_, query, num_samples=draws, reduce="mean", generator=generator,
                              floor=floor).double().numpy()
    return out


def simplex_weights(truth, estimates, hidden, names) -> np.ndarray:
    """Per column, non-negative weights summing to 1 minimising the squared error on the hidden cells."""
    weights = np.zeros((truth.shape[1], len(names)))
    for j in range(truth.shape[1]):
        cells = hidden[:, j]
        if cells.sum() < 5:
            weights[j, 0] = 1.0
            continue
        a = np.stack([estimates[n][cells, j] for n in names], 1)
        heavy = 1e3 * math.sqrt(cells.sum())            # the sum-to-one row, weighted to hold
        weights[j] = nnls(np.vstack([a, np.full(len(names), heavy)]), np.append(truth[cells, j], heavy))[0]
    return weights


def score_one(table: str, seed: int, args) -> dict:
    d = fitted(table, seed, args.fits)
    imputer, truth, hidden, categorical, fit_seconds, load = (d["imputer"], d["truth"], d["hidden"], d["categorical"],
                                                              d["fit_seconds"], d["load"])
    numeric = imputer._numeric()
    started = time.process_time()
    train, valid = split(imputer, d.get("train_rows"))
    rate = RATE
    imputer.set_params(blend="stack")
    imputer.blend_ = "stack"            # what fit prepares with blend="stack" (`_chosen_blend`)
    imputer.gaussian_, imputer.trees_, imputer.blend_weights_, imputer.stack_weights_ = \
        imputer._fit_blend(train, valid, rate)
    blend_cpu = time.process_time() - started
    holes = np.where(hidden, np.nan, truth)
    res = {"table": table, "seed": seed, "steps": imputer.n_steps_, "fit_seconds": fit_seconds, "fit_load": load,
           "blend_cpu": blend_cpu}

    def score(fill):
        return bench.scores(truth, np.where(hidden, fill, truth), hidden, categorical)

    for name, blend in (("stack", "stack"), ("gaussian", "gaussian"), ("network", "none")):
        s = score(imputer.set_params(blend=blend).transform(holes).astype(np.float64))
        res[name] = s["nrmse"]
        if "accuracy" in s:
            res[name + "_accuracy"] = s["accuracy"]
    imputer.set_params(blend="stack")
    test = candidates(imputer, imputer._model_units(holes), args.draws)
    rows, held, _, _ = imputer._masked_held_out(valid, rate, imputer.seed_ + 2)
    vtruth, vhidden = rows.double().numpy(), held.numpy()
    checks = candidates(imputer, np.where(vhidden, np.nan, vtruth), 0)

    def units(fill):        # model units -> the benchmark's units, categorical cells the network's
        return imputer._file_units(torch.from_numpy(np.where(numeric, fill, test["network"])))

    mixes = {"trees": ["trees"], "snapshot": ["snapshot"], "m_ab": ["network", "trees"]}
    if args.draws:
        mixes.update({"draws": ["draws"], "m_abd": ["network", "trees", "draws"],
                      "m_aebd": ["network", "snapshot", "trees", "draws"]})
    for name, parts in mixes.items():
        res[name] = score(units(sum(test[p] for p in parts) / len(parts)))["nrmse"]
    names = ["network", "g", "trees"]
    weights = simplex_weights(vtruth, checks, vhidden, names)
    res["nnls"] = score(units(sum(weights[:, i] * test[n] for i, n in enumerate(names))))["nrmse"]
    errors = np.stack([((checks[n] - vtruth) ** 2 * vhidden).sum(0) for n in names], 1)
    pick = np.eye(len(names))[errors.argmin(1)]
    res["choice"] = score(units(sum(pick[:, i] * test[n] for i, n in enumerate(names))))["nrmse"]
    for path in CACHES:
        entry = json.loads(path.read_text()).get(f"{table}|mcar|{RATE:g}|{seed}|1500|250|hyperimpute") \
            if path.exists() else None
        if entry:
            res["hyperimpute"] = entry["nrmse"]
            if "accuracy" in entry:
                res["hyperimpute_accuracy"] = entry["accuracy"]
    res["stack_weights"] = np.round(imputer.stack_weights_, 3).tolist()
    return res


def paired(rows: list[dict], a: str, b: str) -> str:
    d = [r[a] - r[b] for r in rows if a in r and b in r]
    if len(d) < 2:
        return "—" if not d else f"{d[0]:+.3f}"
    se = np.std(d, ddof=1) / math.sqrt(len(d))
    return f"{np.mean(d):+.3f} ± {se:.3f}" + (" **" if abs(np.mean(d)) > 2 * se else "")


def render(rows: list[dict], header: str) -> str:
    tables = list(dict.fromkeys(r["table"] for r in rows))
    methods = [m for m in LABELS if any(m in r for r in rows)]
    lines = ["# Imputation levers at 20% MCAR: paired within each fit and against HyperImpute", "", header, "",
             "NRMSE on hidden numeric cells, mean over seeds (n); paired differences mean ± SE over seeds "
             "(negative: the first is better; ** beyond 2 SE). Every fill of a row comes from the same fit.", ""]
    lines += ["| method | " + " | ".join(f"{t} (n)" for t in tables) + " |", "|---" * (len(tables) + 1) + "|"]
    for m in methods:
        cells = []
        for t in tables:
            v = [r[m] for r in rows if r["table"] == t and m in r]
            cells.append(f"{np.mean(v):.3f} ({len(v)})" if v else "—")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference | " + " | ".join(tables) + " |", "|---" * (len(tables) + 1) + "|"]
    for m in methods:
        if m == "hyperimpute":
            continue
        lines.append(f"| {LABELS[m]} − HyperImpute | " + " | ".join(
            paired([r for r in rows if r["table"] == t], m, "hyperimpute") for t in tables) + " |")
    for m in methods:
        if m in ("hyperimpute", "stack"):
            continue
        lines.append(f"| stack − {LABELS[m]} | " + " | ".join(
            paired([r for r in rows if r["table"] == t], "stack", m) for t in tables) + " |")
    if any("stack_accuracy" in r for r in rows):
        lines += ["", "Accuracy on hidden categorical cells (the stack leaves them to the network):", ""]
        for t in tables:
            part = [r for r in rows if r["table"] == t and "stack_accuracy" in r]
            if part:
                lines.append(f"- {t}: network {np.mean([r['stack_accuracy'] for r in part]):.3f}, HyperImpute "
                             f"{np.mean([r.get('hyperimpute_accuracy', math.nan) for r in part]):.3f} "
                             f"({len(part)} seeds)")
    lines += ["", "Per fit: steps, fit wall seconds (load), CPU seconds of the stack's fit part (trees, weights):", ""]
    lines += [f"- {r['table']} seed {r['seed']}: {r['steps']} steps, fit {r['fit_seconds']:.0f} s (load "
              f"{r['fit_load']:.1f}), stack {r['blend_cpu']:.1f} CPU s" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["magic", "house_16H", "fair", "houses"],
                        choices=[*bench.NUMERIC_TABLES, "fair", *bench.UNSEEN_TABLES])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--draws", type=int, default=50, help="joint draws for the mean-of-draws candidate (0: none)")
    parser.add_argument("--fits", type=Path, default=HERE.parent / "runs" / "imputation-accuracy",
                        help="fitted imputers kept as pickles (read where present, written otherwise)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "imputation-accuracy.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = bench.machine(torch.device("cpu"))
    rows = []
    for table in args.tables:
        for seed in range(args.seeds):
            rows.append(score_one(table, seed, args))
            print(json.dumps(rows[-1]), flush=True)
            args.out.with_suffix(".json").write_text(json.dumps(rows, indent=0))
            args.out.write_text(render(rows, header))
    print(render(rows, header))


if __name__ == "__main__":
    main()
