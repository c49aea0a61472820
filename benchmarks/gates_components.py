"""A check beside `gates.py --task formation`: does the mixture density's exact conditional
close the gap with more components than its grid offered?

The formation has 27 joint modes at a segment's start; the first run's grid gave the mixture
density 32 or 64 components (64 won as an assistant, 3.7-4.5 gates behind MAC; since then the
benchmark gives it 256 or 512). Here it trains on the same
200 demonstrations (width 128, depth 3, the same steps, batch, seed and floor) with each
component count and learning rate asked for, scores each configuration as the operator's
conditioned assistant on the 100 tuning episodes, and flies the best per arrangement on
the 1000 evaluation episodes, paired with MAC's tuned assistant read from the benchmark's
results (`results/gates_formation.json`, the same episode seeds; MAC's rows do not depend on
the mixture density's grid). Its own 2 x 2 grid, the budget every method gets.

    python benchmarks/gates_components.py --components 128 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import gates
from anyorder.control import MixtureDensityPolicy, fit
from common import machine, set_threads
from policy_bench import mean_se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "gates_formation.json")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    set_threads(args.threads)
    gates.use_task("formation")
    print(machine(torch.device("cpu")))
    started = time.perf_counter()
    _, data, _ = gates.demonstrations(200, 0, Path(__file__).resolve().parent.parent / "runs" / "gates_components")
    tune_seeds = range(gates.TUNE_SEEDS, gates.TUNE_SEEDS + 100)
    scored = {dim: [] for dim in gates.ARRANGEMENTS}
    for k in args.components:
        for lr in args.lrs:
            tick = time.perf_counter()
            torch.manual_seed(0)
            policy = MixtureDensityPolicy.for_table(data, len(gates.STATE_COLUMNS), width=128, depth=3,
                                                    components=k, min_log_scale=-3.0)
            fit(policy, data, steps=args.steps, batch_size=256, lr=lr, seed=0, progress=False)
            for dim, mask in gates.ARRANGEMENTS.items():
                value = gates.rollout(gates.team(policy, mask, 0), tune_seeds)[0].mean()
                scored[dim].append((value, k, lr, policy))
                print(f"operator {dim}: {k} components, lr {lr:g}: assistant's tuning reward {value:.2f} "
                      f"({time.perf_counter() - tick:.0f} s)", flush=True)
    mac = json.loads(args.results.read_text())["results"]
    for dim, mask in gates.ARRANGEMENTS.items():
        value, k, lr, policy = max(scored[dim], key=lambda t: t[0])
        mdn = gates.rollout(gates.team(policy, mask, 0), range(args.episodes))[0]
        ours = np.array(next(v for name, v in mac.items()
                             if name.startswith(f"operator {dim} + MAC assistant tuned as an assistant")))
        print("operator {}: mixture density ({} components, lr {:g}) {:.2f} ± {:.2f}; MAC tuned as an assistant "
              "{:.2f} ± {:.2f}; MAC's gap {:+.2f} ± {:.2f}".format(
                  dim, k, lr, *mean_se(mdn), *mean_se(ours), *mean_se(ours - mdn)))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
