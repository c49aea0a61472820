"""Sampling rows/s of a trained path run at K = D, D/2, D/4, D/8, D/16 evenly spaced steps,
unconditional, one batch of --rows rows, on this process's CPU clock (a shared machine).

    python benchmarks/path_sampling.py --threads 1 runs/text-cpu-path
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
    parser.add_argument("--rows", type=int, default=32)
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    model, _, meta = load_model(args.run)
    print(machine(torch.device("cpu")))
    dim = meta["dim"]
    x = torch.zeros(args.rows, dim, dtype=torch.long)
    empty = torch.zeros_like(x, dtype=torch.bool)
    model.sample(x, empty, steps=dim)                       # warm-up
    base = None
    for steps in (dim, dim // 2, dim // 4, dim // 8, dim // 16):
        start = time.process_time()
        model.sample(x, empty, generator=torch.Generator().manual_seed(0), steps=steps)
        rate = args.rows / (time.process_time() - start)
        base = base or rate
        print(f"K={steps:4d}: {rate:8.1f} rows/s ({rate / base:.1f}x K = D)", flush=True)


if __name__ == "__main__":
    main()
