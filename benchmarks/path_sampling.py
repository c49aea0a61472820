"""Sampling rows/s of a trained path run at K = D, D/2, D/4, D/8, D/16 evenly spaced steps,
unconditional, one batch of each --rows size, on this process's CPU clock (a shared machine),
the best of --repeats draws (timed in turns over K, so a slow spell of the machine spreads
over all), and each K's speed-up over K = D at that batch.

    python benchmarks/path_sampling.py --threads 1 --rows 1 8 32 runs/text-cpu-path
"""

from __future__ import annotations

import argparse
import time

import torch

from anyorder.build import load_model
from common import add_threads_flag, machine, set_threads


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--rows", type=int, nargs="+", default=[32])
    parser.add_argument("--repeats", type=int, default=3)
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    model, _, meta = load_model(args.run)
    print(machine(torch.device("cpu")))
    dim = meta["dim"]
    budgets = [k for k in (dim, dim // 2, dim // 4, dim // 8, dim // 16) if k >= 1]
    for rows in args.rows:
        x = torch.zeros(rows, dim, dtype=torch.long)
        empty = torch.zeros_like(x, dtype=torch.bool)
        model.sample(x, empty, steps=dim)                       # warm-up
        best = {k: float("inf") for k in budgets}
        for _ in range(args.repeats):
            for steps in budgets:
                start = time.process_time()
                model.sample(x, empty, generator=torch.Generator().manual_seed(0), steps=steps)
                best[steps] = min(best[steps], time.process_time() - start)
        base = rows / best[dim]
        for steps in budgets:
            rate = rows / best[steps]
            print(f"rows={rows:3d} K={steps:4d}: {rate:8.1f} rows/s ({rate / base:.1f}x K = D)", flush=True)


if __name__ == "__main__":
    main()
