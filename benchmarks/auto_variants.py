"""missingness="auto": detection variants scored on the same fits (paired), MNAR and random holes.

benchmarks/imputation.py refits the imputer for every run, so two detection variants there
differ by their fits' noise too. This script fits one AnyOrderImputer per table and seed
exactly as `imputation.py --methods imputer` does (same train rows, defaults,
random_state=seed), pickles it, and then scores every variant on that fit with the same
masks (`imputation.make_mask`): which columns each declares, the 90% intervals' coverage
(`quantiles(..., num_samples=100)`, as the benchmark) split into declared and undeclared
columns, and the NRMSE of missingness="auto"'s conditional-mean fills. Variants:

  before             Bonferroni; held-out reference's SE widened by sqrt(copies); no clip; no score test
  holm               Holm's step-down; the rest as before
  holm+cluster       and the reference's SE clustered over the held-out rows (sandwich)
  holm+cluster+clip  and the draws clipped to each column's range in fit
  all                and a separated fit tested by the score statistic (the imputer as shipped)

    python benchmarks/auto_variants.py fit --out runs/auto                      # 12 fits, 75 CPU s each
    python benchmarks/auto_variants.py score --out runs/auto --json runs/auto/scores.json
    python benchmarks/auto_variants.py summary --json runs/auto/scores.json

fair needs statsmodels (the [imputation] extra's environment).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chi2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imputation as B  # noqa: E402
import anyorder.imputer as I  # noqa: E402
from anyorder import self_masking as S  # noqa: E402

TABLES = ("magic", "houses", "house_16H", "fair")
HOLM, SCORE = S.self_masked_columns, S.score_against


def bonferroni(statistic, tested, alpha):
    """The test before Holm: each tested column against alpha / their number."""
    return tested & (chi2.sf(statistic, 1) < alpha / max(1, int(tested.sum())))


def no_score(draws, *rest, **options):
    return np.zeros(draws.shape[-1])


VARIANTS = {"before": ("widened", bonferroni, no_score), "holm": ("widened", HOLM, no_score),
            "holm+cluster": ("cluster", HOLM, no_score), "holm+cluster+clip": ("clip", HOLM, no_score),
            "all": ("clip", HOLM, SCORE)}


def fit(out: Path, seeds, tables) -> None:
    for seed in seeds:
        for table in tables:
            path = out / f"fit_{table}_{seed}.pkl"
            if path.exists():
                continue
            data = B.load(table, out / "data")
            categorical = B.categorical_columns(data)
            train = B.subsample(data.split("train"), 1500, seed=0)
            imputer, seconds = B.fit_imputer({}, train.double().numpy(), categorical, seed)
            print(f"{table} seed {seed}: {imputer.n_steps_} steps, {seconds:.0f} s wall, load {os.getloadavg()[0]:.1f}",
                  flush=True)
            with path.open("wb") as handle:
                pickle.dump({"imputer": imputer, "truth": data.split("test")[:250].double().numpy(),
                             "categorical": categorical}, handle)


def held_out(imputer, table: str, out: Path):
    """The fit's held-out and train rows (model units), rebuilt as `fit` split them."""
    data = B.load(table, out / "data")
    train, valid = B.fit_split(imputer, B.subsample(data.split("train"), 1500, seed=0).double().numpy())
    return valid, train


def widened_reference(imputer, draws, rows, hidden, numeric, copies):
    """The reference before this change: the observed information's SE times sqrt(copies)."""
    complete = ~np.isnan(rows).any(1)
    draws, rows, hidden = draws[:, complete], rows[complete], hidden[complete]
    a, _, _, se = S.fit_conditioned(draws, hidden, numeric, numeric & ~np.isnan(rows).any(0))
    enough = S.estimable(hidden, numeric)
    fitted = enough & np.isfinite(se)
    return {"slope": np.where(fitted, a, np.where(enough, 0.0, np.nan)),
            "se": np.where(fitted, se * np.sqrt(copies), np.where(enough, np.inf, np.nan))}


def references(imputer, table: str, out: Path) -> dict:
    """The three held-out references of the variants, recomputed on the fit's own held-out rows."""
    valid, train = held_out(imputer, table, out)
    levels = imputer.levels_pit_
    imputer._clipped = lambda draws: draws
    imputer._reference = lambda *args: widened_reference(imputer, *args)
    imputer._calibrate(valid, 0.2)
    widened = {k: imputer.mechanism_reference_[k] for k in ("slope", "se")}      # no range: no clip
    del imputer._reference
    imputer._calibrate(valid, 0.2)
    cluster = {k: imputer.mechanism_reference_[k] for k in ("slope", "se")}
    del imputer._clipped
    rebuilt = imputer._calibrate(valid, 0.2, train)["upper"]
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, levels["upper"]) if a is not None), \
        "the held-out rows were not rebuilt"
    return {"widened": widened, "cluster": cluster, "clip": imputer.mechanism_reference_}


def score(out: Path, conditions, seeds, tables, path: Path) -> None:
    records = []
    original_detect = I.AnyOrderImputer._detect
    for seed in seeds:
        for table in tables:
            with (out / f"fit_{table}_{seed}.pkl").open("rb") as handle:
                saved = pickle.load(handle)
            imputer, truth, categorical = saved["imputer"], saved["truth"], saved["categorical"]
            refs = references(imputer, table, out)
            plain_draws = imputer._draws
            for mask, rate in conditions:
                if mask != "mnar" and seed > 1:         # random holes: seeds 0-1
                    continue
                memo = {}

                def draws(values, m, model, memo=memo):      # the same draws for every variant
                    key = (hash(values.tobytes()), values.shape, m, id(model))
                    if key not in memo:
                        memo[key] = plain_draws(values, m, model)
                    return memo[key].copy()

                imputer._draws = draws
                hidden = B.make_mask(mask, truth, rate, seed)
                holes = np.where(hidden, np.nan, truth)
                cells = hidden & ~categorical[None]
                imputer.set_params(missingness="random", reduce="conditional-mean")
                plain_fill = imputer.transform(holes).astype(float)
                low, high = imputer.quantiles(holes, (0.05, 0.95), num_samples=100)
                plain_inside = (truth >= np.asarray(low, float)) & (truth <= np.asarray(high, float))
                done = {}
                for name, (reference, test, score_test) in VARIANTS.items():
                    imputer.mechanism_reference_ = refs[reference]
                    S.self_masked_columns, S.score_against = test, score_test
                    try:
                        imputer.set_params(missingness="auto")
                        detected = original_detect(imputer, imputer._prepare(holes)[1])
                    finally:
                        S.self_masked_columns, S.score_against = HOLM, SCORE
                    keep = detected[4]
                    if tuple(keep) not in done:
                        fill, inside = plain_fill, plain_inside
                        if keep.any():
                            imputer._detect = lambda values, d=detected: d
                            try:
                                fill = imputer.set_params(reduce="conditional-mean").transform(holes).astype(float)
                                low, high = imputer.quantiles(holes, (0.05, 0.95), num_samples=100)
                            finally:
                                del imputer._detect
                            inside = (truth >= np.asarray(low, float)) & (truth <= np.asarray(high, float))
                        done[tuple(keep)] = fill, inside
                    fill, inside = done[tuple(keep)]
                    p_value = np.where(detected[3], chi2.sf(detected[2], 1), np.nan)
                    share = lambda where: float(inside[where].mean()) if where.any() else None  # noqa: E731
                    records.append({
                        "table": table, "seed": seed, "cond": f"{mask}:{rate}", "variant": name,
                        "declared": np.flatnonzero(keep).tolist(),
                        "p": [None if np.isnan(x) else float(x) for x in p_value],
                        "nrmse": B.scores(truth, fill, hidden, categorical)["nrmse"],
                        "nrmse_random": B.scores(truth, plain_fill, hidden, categorical)["nrmse"],
                        "coverage": share(cells), "coverage_random": float(plain_inside[cells].mean()),
                        "cov_declared": share(cells & keep[None]), "cov_undeclared": share(cells & ~keep[None]),
                        "cells_declared": int((cells & keep[None]).sum()), "cells": int(cells.sum()),
                        "load": os.getloadavg()[0]})
                    r = records[-1]
                    print(f"{table} seed {seed} {r['cond']} {name}: declared {len(r['declared'])}, coverage "
                          f"{r['coverage']:.3f} (random {r['coverage_random']:.3f}), NRMSE {r['nrmse']:.4f}", flush=True)
                del imputer._draws
                path.write_text(json.dumps(records))


def summary(path: Path) -> None:
    records = json.loads(path.read_text())

    def mean_se(values):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        return f"{np.mean(values):.3f} ± {se:.3f}"

    for cond in dict.fromkeys(r["cond"] for r in records):
        print(f"== {cond}")
        for table in TABLES:
            before = {r["seed"]: r for r in records if (r["table"], r["cond"], r["variant"]) == (table, cond, "before")}
            for name in VARIANTS:
                rows = [r for r in records if (r["table"], r["cond"], r["variant"]) == (table, cond, name)]
                if not rows:
                    continue
                declared = sum(r["cells_declared"] for r in rows)
                inside_declared = sum(r["cov_declared"] * r["cells_declared"] for r in rows if r["cov_declared"] is not None)
                undeclared = sum(r["cells"] - r["cells_declared"] for r in rows)
                inside_undeclared = sum(r["cov_undeclared"] * (r["cells"] - r["cells_declared"])
                                        for r in rows if r["cov_undeclared"] is not None)
                counts = ",".join(f"{len(r['declared'])}/{sum(p is not None for p in r['p'])}" for r in rows)
                print(f"{table:10s} {name:18s} coverage {mean_se([r['coverage'] for r in rows])} "
                      f"(declared cells {inside_declared / declared if declared else float('nan'):.3f}, "
                      f"undeclared {inside_undeclared / undeclared if undeclared else float('nan'):.3f}) "
                      f"NRMSE {mean_se([r['nrmse'] for r in rows])}, − before "
                      f"{mean_se([r['nrmse'] - before[r['seed']]['nrmse'] for r in rows])}; declared {counts}; "
                      f"least p {min(min(p for p in r['p'] if p is not None) for r in rows):.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("fit", "score", "summary"))
    parser.add_argument("--out", type=Path, default=Path("runs/auto"), help="folder of the pickled fits")
    parser.add_argument("--json", type=Path, default=Path("runs/auto/scores.json"))
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=["mnar:0.2", "mcar:0.2", "mar:0.2"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "fit":
        fit(args.out, args.seeds, args.tables)
    elif args.step == "score":
        score(args.out, [(c.split(":")[0], float(c.split(":")[1])) for c in args.conditions], args.seeds, args.tables, args.json)
    else:
        summary(args.json)


if __name__ == "__main__":
    main()
