"""Exact cardinality reweighting vs the official MAC code's pool resampling, timed side by side.

Ours: `lattice.training_nodes(..., reweight=True)` draws (base-set size, steps) from the
reweighted cardinality table, then the sets: no pool. Official (AndyShih12/mac,
`MAC.sample_mask` with `normalize_cardinality`): draw 100× the batch from the un-reweighted
distribution, order variables by argsort over random / mask keys, weight every node by
|s|+1 and keep `batch` of them by multinomial without replacement (sampling-importance-
resampling). `official_nodes` repeats the official operations one for one (it drops only
their per-node `current_selection` mask, which nothing here uses).

    python benchmarks/training_nodes.py                           # B=64, D=1024: seconds on a CPU
    python benchmarks/training_nodes.py --full --repeats 1        # B=512, D=3072 (CIFAR-10's D)
    python benchmarks/training_nodes.py --full --device cuda --repeats 20
"""

from __future__ import annotations

import argparse

import torch

from anyorder import lattice
from common import add_threads_flag, machine, median_seconds, resolve, set_threads


def official_nodes(batch: int, dim: int, strategy: str, pool_factor: int = 100, device=None) -> torch.Tensor:
    """The official sampler under the natural order, vectorised as the official code is: `[B, D]` bool.

    aoarm ('none'): a random order, |s| ~ U{0..D-1}. mac ('marginal'): e from a random order
    with |e| ~ U{1..D}, k ~ U{0..|e|-1}. mac-inpaint ('inpainting'): o with |o| ~ U{0..D-1},
    k ~ U{0..D-|o|-1} more. Then SIR with weights |s|+1 from a pool of `pool_factor`·B.
    """
    pool = pool_factor * batch
    order = torch.rand(pool, dim, device=device).argsort(-1)
    if strategy == "aoarm":
        steps = torch.randint(dim, (pool, 1), device=device)
    else:
        low = 1 if strategy == "mac" else 0
        base = order < torch.randint(low, dim + low, (pool, 1), device=device)
        size = base.sum(-1, keepdim=True)
        room = size if strategy == "mac" else dim - size
        # k ~ U{0..room-1} as the official code draws it: multinomial over a 0/1 row of length D.
        steps = torch.multinomial((torch.arange(dim, device=device) < room).float(), 1)
        steps = steps if strategy == "mac" else size + steps
        # Natural order, base set first: ranks from a stable descending sort of the mask.
        order = base.long().sort(dim=-1, descending=True, stable=True).indices.argsort(-1)
    node = order < steps
    keep = torch.multinomial((node.sum(-1) + 1).float(), batch, replacement=False)
    return node[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, help="default 64 (512 with --full)")
    parser.add_argument("--dim", type=int, help="variables per row: default 1024 (3072 with --full)")
    parser.add_argument("--pool-factor", type=int, default=100, help="official pool size / batch size")
    parser.add_argument("--strategies", nargs="+", default=["mac", "aoarm", "mac-inpaint"],
                        choices=["mac", "aoarm", "mac-inpaint"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per sampler (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    parser.add_argument("--full", action="store_true",
                        help="defaults of B=512, D=3072 (the official pool is then 51200 x 3072: ~5 GB, ~1 min a call on 2 CPU cores)")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    args.batch_size = args.batch_size or (512 if args.full else 64)
    args.dim = args.dim or (3072 if args.full else 1024)
    device = resolve(args.device)
    print(machine(device))
    print(f"training nodes: B={args.batch_size}, D={args.dim}, protocol natural, reweight on; "
          f"official pool {args.pool_factor}x = {args.pool_factor * args.batch_size} nodes; "
          f"median of {args.repeats} calls after a warm-up")
    print(f"{'strategy':<12} {'ours ms':>10} {'official ms':>12} {'speed-up':>9} {'mean |s| ours':>14} {'official':>9}")
    for strategy in args.strategies:
        ours = lambda: lattice.training_nodes(args.batch_size, args.dim, strategy, "natural",
                                              reweight=True, device=device)
        official = lambda: official_nodes(args.batch_size, args.dim, strategy, args.pool_factor, device)
        # The warm-up calls double as a check: the same distribution gives the same mean |s|
        # up to sampling noise.
        size_ours, size_official = (fn().sum(-1).float().mean().item() for fn in (ours, official))
        t_ours = median_seconds(ours, device, args.repeats, warmup=0)
        t_official = median_seconds(official, device, args.repeats, warmup=0)
        print(f"{strategy:<12} {1e3 * t_ours:>10.2f} {1e3 * t_official:>12.1f} {t_official / t_ours:>8.0f}x "
              f"{size_ours:>14.0f} {size_official:>9.0f}")


if __name__ == "__main__":
    main()
