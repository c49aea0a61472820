"""Variants of the MAC assistant (and the mixture density) on the four-route gates task, by
per-segment failure rate: the quick screen behind docs/policies.md's choice of a fix.

Every segment of `gates.py --task parity` starts in the same state, so an assistant's
episode score follows from its per-segment failure rate p, E[gates] = Σ_{k=1..10} (1 - p)^k,
and 20,000 segments measure p to about ±0.0004 (binomial SE at p = 0.003) in half a minute.
Each spec trains one configuration on gates.py's 200 demonstrations (width 128, depth 3,
1500 steps, seed 0) and flies it as the operator's assistant in both arrangements:

    kind,lr,components,floor[,targets=next][,nodes=aoarm|subset][,reweight=0]

kind: mac or mdn; floor: the mixture's log-scale floor (standardised units). Two training
variants of MAC replace a library function for the run:
  targets=next  train only the edge sampling takes out of each node (the first missing
                dimension in the natural order) instead of every missing dimension;
  nodes=aoarm   action nodes of uniform cardinality, then a uniform subset, weighted by
                |node| + 1 (every singleton 11%, every pair 17%), instead of MAC's inpainting
                nodes (which draw {vy} 4.5% and {vx, vy} 40% of the time);
  nodes=subset  a uniform proper subset of the action dimensions (each 1/7);
and reweight=0 draws MAC's own nodes without the weight |node| + 1 (a constructor option).

    python benchmarks/gates_variants.py mac,3e-3,3,-7 mac,3e-3,3,-3 mdn,1e-3,10,-3 --threads 1
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import gates
import gates_diagnosis
from anyorder import control, lattice
from anyorder.control import ConditionalPolicy, MixtureDensityPolicy, fit
from common import machine, set_threads

MAC_NODES, ALL_TARGETS = control.policy_nodes, lattice.targets


def next_targets(node, kind="all", protocol="natural"):
    """Only the first missing dimension in the protocol's order (the edge sampling takes)."""
    keys = lattice.protocol_keys(node.shape[-1], protocol, device=node.device).expand_as(node)
    first = torch.where(node, node.shape[-1], keys).amin(-1, keepdim=True)
    return ~node & (keys == first)


def other_nodes(kind: str):
    """A replacement for `control.policy_nodes` drawing the action node another way."""
    def nodes(batch, state_dim, action_dim, protocol="natural", reweight=True, generator=None, device=None):
        if kind == "subset":
            codes = torch.randint(0, 2 ** action_dim - 1, (batch,), generator=generator)
            action = ((codes.unsqueeze(-1) >> torch.arange(action_dim)) & 1).bool()
        else:
            weights = torch.arange(1.0, action_dim + 1)
            card = torch.multinomial(weights / weights.sum(), batch, replacement=True, generator=generator)
            action = lattice.uniform_subsets(card, action_dim, generator)
        return torch.cat([torch.ones(batch, state_dim, dtype=torch.bool), action], -1).to(device)
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--segments", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    gates.use_task("parity")
    print(machine(torch.device("cpu")))
    _, data, _ = gates.demonstrations(200, 0, gates.Path(__file__).resolve().parent.parent / "runs" / "gates_variants")
    for spec in args.specs:
        kind, lr, components, floor, *extra = spec.split(",")
        options = dict(item.split("=") for item in extra)
        control.policy_nodes = other_nodes(options["nodes"]) if "nodes" in options else MAC_NODES
        lattice.targets = next_targets if options.get("targets") == "next" else ALL_TARGETS
        tick = time.perf_counter()
        torch.manual_seed(0)
        cls = ConditionalPolicy if kind == "mac" else MixtureDensityPolicy
        constructor = {"reweight": options["reweight"] == "1"} if "reweight" in options else {}
        policy = cls.for_table(data, 4, width=128, depth=3, components=int(components), min_log_scale=float(floor),
                               **constructor)
        fit(policy, data, steps=1500, batch_size=256, lr=float(lr), seed=0, progress=False)
        out = []
        for dim, mask in gates.ARRANGEMENTS.items():
            found = gates_diagnosis.causes(mask, *gates_diagnosis.segments(policy, mask, args.segments, 7)[1:])
            p = found["failure rate"]
            out.append(f"operator {dim}: failure {p:.4f} ± {math.sqrt(p * (1 - p) / args.segments):.4f} "
                       f"({sum((1 - p) ** k for k in range(1, 11)):.2f} gates; route {found['route (first move odd)']}, "
                       f"switch {found['switch (ends odd)']}, magnitude {found['magnitude']})")
        print(f"{spec}: " + " | ".join(out) + f" [{time.perf_counter() - tick:.0f} s]", flush=True)
    control.policy_nodes, lattice.targets = MAC_NODES, ALL_TARGETS


if __name__ == "__main__":
    main()
