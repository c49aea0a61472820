"""Where a conditioning assistant's failures on the four-route gates task come from.

Every segment of `gates.py --task parity` starts in the same state, so a policy's episode
score is fixed by its per-segment failure rate p: E[gates] = Σ_{k=1..10} (1 - p)^k. This
script flies many independent segments (the operator's intention drawn per segment) with
the operator on vy or vx and each assistant on the rest, and sorts every failed segment by
cause:
  - route: the assistant's first move picks signs whose product with the operator's sign is
    odd — it heads for a corner that is no gate (the coupling, not the magnitude, failed);
  - switch: the first move is consistent but the segment ends nearer an odd corner;
  - magnitude: the segment ends on the right corner's side but misses the 0.25 radius; the
    step and dimension of the draw furthest from the demonstrator's feedback law (in its
    noise's standard deviations) are counted.
It also compares the assistants' conditional densities with the demonstrator's known ones on
demonstrator rows of the tuning seeds: per segment step, the mean of log p_true - log p_model
of the assistant's dimensions given the state and the operator's (nats; 0 is exact). Rows
with a clipped action are left out (there the demonstrator's law has a point mass). The
demonstrator's conditional is exact at the first step (an equal mixture of the two routes the
operator's sign leaves, 0.05 noise per dimension); from the second step on the offset names
the route (each sign misread with probability Φ(-6.7)), so it is one Gaussian.

    python benchmarks/gates_diagnosis.py --threads 1        # about 3 minutes
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import gates
from anyorder.control import ConditionalPolicy, MixtureDensityPolicy, SharedAutonomy, fit
from common import machine, set_threads

CONFIGS = {  # the configurations gates.py --task parity chose at 1500 steps (results/gates_parity.md)
    "MAC (lr 3e-3, 3 components)": (ConditionalPolicy, 3e-3, 3),
    "MAC (lr 1e-3, 10 components)": (ConditionalPolicy, 1e-3, 10),
    "mixture density (lr 1e-3, 10 components)": (MixtureDensityPolicy, 1e-3, 10),
}


def segments(assistant, dims: torch.Tensor, count: int, seed: int, temperature: float | None = None):
    """Fly `count` independent segments; returns (intents `[N]`, actions `[3, N, 3]`, offsets
    `[3, N, 3]` before each step, the demonstrator's noise-free law `[3, N, 3]` toward the gate
    the segment ended nearest)."""
    rng = np.random.default_rng(seed)
    intents = rng.integers(0, len(gates.GATES), count)
    pilot = gates.Pilot(seed + 1)
    pilot.intent = intents
    generator = torch.Generator().manual_seed(seed)
    shared = SharedAutonomy(pilot, assistant, dims)
    offset = np.zeros((count, 3))
    actions, offsets = [], []
    for step in range(gates.STEPS):
        state = torch.from_numpy(np.column_stack([offset, np.full(count, step / gates.STEPS)])).float()
        if temperature is None:
            act = shared.act(state, generator=generator)
        else:
            proposal = pilot.act(state)
            mask = dims.expand_as(proposal)
            act = assistant.act(state, proposal, mask, generator=generator, temperature=temperature)
        action = np.clip(act.numpy().astype(np.float64), -gates.SPEED, gates.SPEED)
        offsets.append(offset.copy())
        actions.append(action)
        offset = offset + action
    # The feedback law toward the gate the segment ended nearest (the assistant may take
    # either route the operator's sign leaves open, and either passes).
    route = gates.GATES[np.linalg.norm(offset[:, None] - gates.GATES, axis=-1).argmin(-1)]
    offsets = np.stack(offsets)
    laws = (route[None] - offsets) / (gates.STEPS - np.arange(gates.STEPS))[:, None, None]
    return intents, np.stack(actions), offsets, laws


def causes(dims: torch.Tensor, actions, offsets, laws) -> dict:
    """Failed segments sorted by cause (see the module docstring)."""
    end = offsets[-1] + actions[-1]
    passed = np.linalg.norm(end[:, None] - gates.GATES, axis=-1).min(-1) < gates.RADIUS
    first = np.sign(actions[0]).prod(-1) > 0
    even_end = np.sign(end).prod(-1) > 0
    rest = (~dims).numpy()
    failed = ~passed
    out = {"segments": len(passed), "failure rate": failed.mean(),
           "route (first move odd)": (failed & ~first).sum(),
           "switch (ends odd)": (failed & first & ~even_end).sum(),
           "magnitude": (failed & first & even_end).sum()}
    magnitude = failed & first & even_end
    z = np.abs(actions - laws)[:, magnitude][..., rest] / gates.NOISE   # [3, M, rest]
    if magnitude.any():
        flat = z.reshape(3, magnitude.sum(), -1).transpose(1, 0, 2).reshape(magnitude.sum(), -1)
        worst = flat.argmax(-1)
        names = [c for c, r in zip(gates.ACTION_COLUMNS, rest) if r]
        for s in range(3):
            for j, name in enumerate(names):
                out[f"  worst draw at step {s + 1}, {name}"] = int((worst == s * len(names) + j).sum())
    for s in range(3):
        err = (actions[s] - laws[s])[:, rest]
        out[f"assistant's draw - law, step {s + 1}: RMS (noise 0.05)"] = float(np.sqrt((err ** 2).mean()))
    return out


def true_log_prob(state: np.ndarray, action: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """log p_demonstrator(a_rest | s, a_operator) `[N]` for unclipped rows (see the docstring)."""
    step = np.rint(state[:, 3] * gates.STEPS).astype(int)
    left = (gates.STEPS - step)[:, None, None]
    means = (gates.GATES[None] - state[:, None, :3]) / left           # [N, 4, 3]
    dens = -0.5 * ((action[:, None] - means) / gates.NOISE) ** 2 - math.log(gates.NOISE * math.sqrt(2 * math.pi))
    joint = dens.sum(-1)                                               # [N, 4]
    known = dens[..., ~rest].sum(-1)
    # The route's prior: uniform at the first step; later the offset's signs name it.
    corner = np.sign(state[:, None, :3]) == np.sign(gates.GATES[None])
    prior = np.where(step[:, None] == 0, 0.25, corner.all(-1).astype(float))
    log_prior = np.log(np.maximum(prior, 1e-300))
    return np.logaddexp.reduce(log_prior + joint, -1) - np.logaddexp.reduce(log_prior + known, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--temperatures", type=float, nargs="*", default=[],
                        help="also fly each assistant at these sampling temperatures (the drawn component's "
                             "noise scaled; the mode drawn as it is)")
    parser.add_argument("--min-log-scale", type=float, default=-7.0,
                        help="both mixtures' log-scale floor, standardised units (the classes' default: -7)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    gates.use_task("parity")
    print(machine(torch.device("cpu")))
    _, data, _ = gates.demonstrations(200, 0, gates.Path(__file__).resolve().parent.parent / "runs" / "gates_diagnosis")
    _, (t_states, t_actions), _ = gates.rollout(gates.demonstrator(1), range(gates.TUNE_SEEDS, gates.TUNE_SEEDS + 100))
    keep = (np.abs(t_actions) < gates.SPEED - 1e-9).all(-1)
    t_states, t_actions = t_states[keep], t_actions[keep]
    print(f"density rows: {keep.sum()} of {len(keep)} unclipped demonstrator rows of the tuning seeds")
    for name, (cls, lr, components) in CONFIGS.items():
        torch.manual_seed(0)
        policy = cls.for_table(data, 4, width=128, depth=3, components=components,
                               min_log_scale=args.min_log_scale)
        fit(policy, data, steps=args.steps, batch_size=256, lr=lr, seed=0, progress=False)
        print(f"\n## {name}, {args.steps} steps, log-scale floor {args.min_log_scale:g}")
        for dim, mask in gates.ARRANGEMENTS.items():
            rest = (~mask).numpy()
            found = causes(mask, *segments(policy, mask, args.segments, 7)[1:])
            p = found["failure rate"]
            print(f"operator on {dim}: per-segment failure {p:.4f} -> expected gates "
                  f"{sum((1 - p) ** k for k in range(1, 11)):.2f}")
            for key, value in list(found.items())[2:]:
                print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
            s, a = torch.from_numpy(t_states).float(), torch.from_numpy(t_actions).float()
            given = mask.expand(len(s), 3)
            with torch.no_grad():
                model = policy.log_prob(s, a, given).numpy()
            gap = true_log_prob(t_states, t_actions, rest) - model
            step = np.rint(t_states[:, 3] * 3).astype(int)
            print("  KL-like gap log p_true - log p_model of the assistant's dims, by step: " +
                  ", ".join(f"{s + 1}: {gap[step == s].mean():.3f}" for s in range(3)))
            for t in args.temperatures:
                found = causes(mask, *segments(policy, mask, args.segments, 7, temperature=t)[1:])
                p = found["failure rate"]
                print(f"  temperature {t}: failure {p:.4f} -> {sum((1 - p) ** k for k in range(1, 11)):.2f}"
                      f" gates; route {found['route (first move odd)']}, switch {found['switch (ends odd)']}, "
                      f"magnitude {found['magnitude']}")


if __name__ == "__main__":
    main()
