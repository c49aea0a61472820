"""missingness="auto" on holes at random: how many columns its test declares self-masked.

For each kept fit (`imputation.py --fits`: the same train rows, defaults and random_state as
`imputation.py --methods imputer`), the test rows get MCAR 20%, MCAR 50% and MAR 20% masks
(`imputation.make_mask`, the benchmark's seeds) and `detect_self_masking` says which numeric
columns it declares at family-wise 1% (Holm). Under these masks no column is self-masked,
so every declaration is a false one; where none is declared, "auto" fills and intervals are
exactly missingness="random"'s. Prints one line per table, condition and seed, then totals.

    python benchmarks/imputation_auto_null.py --fits runs/fits --tables magic houses house_16H fair --seeds 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import imputation as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=Path, required=True)
    parser.add_argument("--tables", nargs="+", default=["magic", "houses", "house_16H", "fair"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--conditions", nargs="+", default=["mcar:0.2", "mcar:0.5", "mar:0.2"])
    parser.add_argument("--out", type=Path, default=None, help="JSON lines of the results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = []
    for table in args.tables:
        for seed, imputer, truth, _ in bench.kept_table_fits(args.fits, table, args.seeds):
            imputer.set_params(missingness="auto")
            for condition in args.conditions:
                mask, _, rate = condition.partition(":")
                hidden = bench.make_mask(mask, truth, float(rate), seed)
                found = imputer.detect_self_masking(np.where(hidden, np.nan, truth))
                tested = int(np.isfinite(np.asarray(found["p_value"], float)).sum())
                record = {"table": table, "condition": condition, "seed": seed,
                          "declared": int(np.sum(found["self_masked"])), "tested": tested,
                          "least_p": float(np.nanmin(np.asarray(found["p_value"], float))) if tested else None}
                records.append(record)
                print(json.dumps(record), flush=True)
                if args.out:
                    args.out.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    print(f"declared {sum(r['declared'] for r in records)} columns on {len(records)} runs "
          f"({sum(r['tested'] for r in records)} column tests)")


if __name__ == "__main__":
    main()
