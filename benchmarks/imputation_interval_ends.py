"""Intervals of discrete columns: coverage and width with the ends calibrated apart or alike.

A discrete column (`AnyOrderImputer.discrete_`: few values, each seen often) is drawn on its
values, so a draw can equal the truth. The held-out calibration then records, per hidden
cell, where the truth's tied draws begin (the level an upper bound needs) and where they end
(the level a lower bound needs), and calibrates each end of an interval on its own. This
script scores, on the same kept fits (`imputation.py --fits`: the same train rows, defaults
and random_state as `imputation.py --methods imputer`; calibration and blend refitted by the
current code), the 90% intervals of `quantiles(num_samples=100)` on the benchmark's test
rows and masks two ways:

- ends: the default, each end calibrated on its own levels;
- alike: both ends on the levels where the tied draws begin (one level per cell), which
  counts a truth equal to the lower bound's value as lying above only the draws below it.

Missing not at random (mnar) is scored with missingness="auto", the rest with "random", as
`imputation.py` scores them. Prints one JSON line per table, condition, seed and variant
(coverage over the hidden numeric cells, per column, and the mean width in the table's
standardised units), then the means.

    python benchmarks/imputation_interval_ends.py --fits runs/fits --tables fair --seeds 5
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import imputation as bench


def scored(imputer, truth: np.ndarray, hidden: np.ndarray, categorical: np.ndarray) -> dict:
    """Coverage (overall and per column) and mean width of the 90% intervals of the holes."""
    low, high = (np.asarray(b, np.float64) for b in
                 imputer.quantiles(np.where(hidden, np.nan, truth), (0.05, 0.95), num_samples=100))
    cells = hidden & ~categorical[None]
    coverage, by_column = bench.interval_coverage(truth, low, high, cells)
    return {"coverage": coverage, "width": float((high - low)[cells].mean()), "by_column": by_column}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=Path, required=True)
    parser.add_argument("--tables", nargs="+", default=["fair"])
    parser.add_argument("--seeds", type=int, default=5, help="mask seeds 0..S-1 (mnar: at most 3, as benchmarked)")
    parser.add_argument("--conditions", nargs="+", default=["mcar:0.2", "mcar:0.5", "mar:0.2", "mnar:0.2"])
    parser.add_argument("--out", type=Path, default=None, help="JSON lines of the results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records, totals = [], defaultdict(list)
    for table in args.tables:
        for seed, imputer, truth, categorical in bench.kept_table_fits(args.fits, table, args.seeds):
            ends = imputer.levels_pit_
            for variant, levels in (("ends", ends), ("alike", {"upper": ends["upper"], "lower": ends["upper"]})):
                imputer.levels_pit_ = levels
                for condition in args.conditions:
                    mask, _, rate = condition.partition(":")
                    if mask == "mnar" and seed > 2:
                        continue
                    imputer.set_params(missingness="auto" if mask == "mnar" else "random")
                    record = {"table": table, "condition": condition, "seed": seed, "variant": variant,
                              "discrete": [j for j, s in enumerate(imputer.discrete_) if s is not None],
                              **scored(imputer, truth, bench.make_mask(mask, truth, float(rate), seed), categorical)}
                    records.append(record)
                    totals[(table, condition, variant)].append((record["coverage"], record["width"]))
                    print(json.dumps(record), flush=True)
                    if args.out:
                        args.out.write_text("\n".join(json.dumps(r) for r in records) + "\n")
            imputer.levels_pit_ = ends
    for (table, condition, variant), values in totals.items():
        coverage, width = np.array(values).T
        se = coverage.std(ddof=1) / np.sqrt(len(coverage)) if len(coverage) > 1 else float("nan")
        print(f"{table} {condition} {variant}: coverage {coverage.mean():.3f} ± {se:.3f} (n={len(coverage)}), "
              f"width {width.mean():.3f}")


if __name__ == "__main__":
    main()
