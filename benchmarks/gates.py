"""Coupled, multimodal demonstrators: what conditioning on the operator buys a shared-autonomy assistant.

The task (numpy, fully seeded, no extra packages): a point flies through a chain of gates in
3-D. Each segment starts at the last gate; two next gates appear, far-upper-left G+ =
(1.2, 1, 1) and near-lower-right G- = (0.6, -1, -1) from there, and the flight must end the
segment's 3 steps within 0.25 of one of them (else the episode ends); 10 segments, reward =
gates passed (0..10). Each step moves by the action, clipped to ±0.4 per dimension, so a
first step that does not head for one gate (a mean between them, or vy toward one gate and
vz toward the other) cannot be made good. The state is the offset from the segment's start
and the phase t/3, so every segment starts in the same state: whatever the history, the
next move is a fair coin between two routes, each moving all three action dimensions
(vx, vy, vz) together.

The demonstrator (and the operator, a surrogate human with an intention) picks a gate per
segment at random and steers a feedback law toward it, a = (G - offset) / (steps left) +
N(0, 0.05²) per dimension. Given the state, the action is bimodal and coupled, so
p(a_rest | s, a_operator) — one mode — differs from p(a_rest | s) — both.

Policies (same backbone, rows, steps and tuning budget; see policy_bench.py):
  full autonomy: MAC (`ConditionalPolicy`), BC (MSE), BC (mixture density over the joint
    action), BC (discretised, per dimension), and the demonstrator as reference;
  shared autonomy, two arrangements: the operator holds vy (the assistant fills vx, vz) or vx
    (the assistant fills vy, vz); assistants: MAC conditioned on the operator, MAC ignoring it
    (p(a_rest | s): the ablation), the mixture density conditioned (its exact mixture
    conditional) and ignoring it, BC (MSE) and BC (discretised), which cannot condition.
Every policy flies the same seeded episodes (the operator's intentions are drawn from the
episode's seed), so gaps are paired. Writes results/gates.md, .json, .png and a figure of
trajectories (results/gates_paths.png).

`--task parity` (results/gates_parity.*) is the same flight with four next gates instead of
two, at the cube's corners of even parity, (±1, ±1, ±1) with vx·vy·vz > 0 — (1, 1, 1),
(1, -1, -1), (-1, 1, -1), (-1, -1, 1) — drawn uniformly per segment. Every dimension now
tells the same amount about the route (one bit of two), so the two operator arrangements
are alike: whichever dimension the operator holds, the other two are still a fair coin
between two routes, and the assistant must pick them together (the third sign follows
from the other two). Any two dimensions are independent given the state, so only a
policy that models the three-way coupling succeeds; an assistant ignoring the operator
passes a segment half the time. In the two-gate task the operator's vy (±1/3 per step,
0.05 noise) names the route outright and every conditioning assistant sits at the ceiling.

`--task formation` (results/gates_formation.*) flies three planar craft at once, one policy
for all six action dimensions (vx1, vy1, vx2, vy2, vx3, vy3). Each craft's next gate is one
of three in its own plane, (1, 1), (0, -1) or (-1, 1) from its last, drawn per segment and
craft independently, so the joint action has 27 modes at a segment's start; a segment passes
when every craft ends within 0.25 of its gate. Within a craft the dimensions are coupled:
its vx names its gate, its vy = +1 leaves a coin between x = ±1. Arrangements: the operator
holds every craft's vy (the assistant fills the vx's) or every craft's vx. A joint mixture
needs a component per combination (27) where a per-dimension conditional needs two; the
mixture density's grid is 256 or 512 components (`--mixture-components`; MAC's stays 3 or 10) and
both mixtures' log-scale floor is -3 (a third of the demonstrator's noise in every
column's standardised units) unless --min-log-scale says otherwise.

    python benchmarks/gates.py --threads 1                 # 200 demos, 1500 steps, 500 episodes; 11 min at load 10
    python benchmarks/gates.py --task parity --threads 1   # the four-gate task, as long
    python benchmarks/gates.py --task formation --episodes 1000 --threads 1   # 25 min at load 5-8
    python benchmarks/gates.py --quick --threads 1         # a smoke run, about a minute

`--min-log-scale F` sets both mixtures' log-scale floor (MAC's and the mixture density's
alike); the results then go to files named with `_floorF`. `--diffusion` adds a diffusion
policy (`DiffusionPolicy`, its own 2 x 2 grid: denoising steps 20 or 100) alone and as an
assistant that inpaints the operator's dimension (files named with `_diffusion`).
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anyorder.control import MixtureDensityPolicy, SharedAutonomy
from anyorder.data.tables import load_table, write_table
from common import machine, set_threads
from policy_bench import DIFFUSION, METHODS, add_flags, grid, grid_flags, grid_note, mean_se, results_table, save, tune, tuning_table

CRAFT_GATES = np.array([[1.0, 1.0], [0.0, -1.0], [-1.0, 1.0]])   # one craft's next gates in its (x, y) plane
TASKS = {"pair": np.array([[1.2, 1.0, 1.0], [0.6, -1.0, -1.0]]),
         "parity": np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]),
         # three craft, each choosing among CRAFT_GATES on its own: 27 joint gates in 6-D
         "formation": np.array([np.concatenate(g) for g in itertools.product(CRAFT_GATES, repeat=3)]),
         # four craft: 81 joint gates in 8-D
         "formation4": np.array([np.concatenate(g) for g in itertools.product(CRAFT_GATES, repeat=4)])}
STEPS, RADIUS, SEGMENTS, NOISE, SPEED = 3, 0.25, 10, 0.05, 0.4
DEMO_SEEDS, TUNE_SEEDS = 100_000, 10_000
# The mixture density's components grid on the formation, far above its 27 joint modes: a
# first run with 32 or 64 and a check with 128 and 256 (scored as an assistant on the tuning
# episodes) found it gaining with every doubling up to 256, so it gets 256 or 512.
FORMATION_COMPONENTS = (256, 512)


def use_task(task: str) -> None:
    """Set the module's task globals: the next gates, the table's columns and the operator
    arrangements (name -> the operator's action dims). The 3-D tasks fly one point (vx, vy,
    vz; the operator holds vy or vx); the formation flies three planar craft (vx1, vy1, ...;
    the operator holds every craft's vx, or every craft's vy)."""
    global GATES, STATE_COLUMNS, ACTION_COLUMNS, ARRANGEMENTS
    GATES = TASKS[task]
    if GATES.shape[1] == 3:
        STATE_COLUMNS, ACTION_COLUMNS = ["dx", "dy", "dz", "phase"], ["vx", "vy", "vz"]
    else:
        crafts = range(1, GATES.shape[1] // 2 + 1)
        STATE_COLUMNS = [f"d{a}{i}" for i in crafts for a in "xy"] + ["phase"]
        ACTION_COLUMNS = [f"v{a}{i}" for i in crafts for a in "xy"]
    ARRANGEMENTS = {dim: torch.tensor([c.startswith(dim) for c in ACTION_COLUMNS]) for dim in ("vy", "vx")}


use_task("pair")   # `main` sets the task flown from --task


class Pilot:
    """The demonstrator's feedback law toward the gate of `intent` `[B]` (set by the rollout
    before each call), as a `Policy`: it keeps `given` dims and sets the rest."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.intent = None

    def act(self, state, action=None, given=None, generator=None) -> torch.Tensor:
        s = state.numpy().astype(np.float64)
        left = STEPS - np.rint(s[:, -1] * STEPS)
        drawn = (GATES[self.intent] - s[:, :-1]) / left[:, None] + NOISE * self.rng.standard_normal(s[:, :-1].shape)
        drawn = torch.from_numpy(drawn).float()
        return drawn if given is None else torch.where(given, action, drawn)


def passes(offset: np.ndarray) -> np.ndarray:
    """Whether each offset `[n, D]` ends a segment at a gate: within RADIUS of one, in 3-D; in
    the formation, every craft within RADIUS of its part of one gate (its own next gate)."""
    plane = 3 if GATES.shape[1] == 3 else 2
    parts = (offset[:, None] - GATES).reshape(len(offset), len(GATES), GATES.shape[1] // plane, plane)
    return (np.linalg.norm(parts, axis=-1).max(-1) < RADIUS).any(-1)


def rollout(act, seeds, paths: bool = False):
    """Fly one episode per seed in lockstep; `act(state [n, D + 1], intent [n]) -> action [n, D]`
    (D action dims, 3, 6 or 8). Returns (gates passed `[N]`, (states, actions) of every step,
    positions `[T, N, D]` if paths)."""
    intents = np.stack([np.random.default_rng(seed).integers(0, len(GATES), SEGMENTS) for seed in seeds])
    n = len(intents)
    offset, start = np.zeros((n, GATES.shape[1])), np.zeros((n, GATES.shape[1]))
    step, segment, done = np.zeros(n, int), np.zeros(n, int), np.zeros(n, bool)
    states, actions, where = [], [], [np.zeros_like(offset)]
    while not done.all():
        live = np.flatnonzero(~done)
        state = np.column_stack([offset[live], step[live] / STEPS])
        action = np.clip(act(state, intents[live, segment[live]]), -SPEED, SPEED)
        states.append(state)
        actions.append(action)
        offset[live] += action
        step[live] += 1
        end = live[step[live] == STEPS]
        passed = passes(offset[end])
        segment[end[passed]] += 1
        start[end[passed]] += offset[end[passed]]
        offset[end[passed]], step[end[passed]] = 0.0, 0
        done[end[~passed]] = True
        done |= segment == SEGMENTS
        where.append(start + offset)
    return segment.astype(np.float64), (np.concatenate(states), np.concatenate(actions)), \
        np.stack(where) if paths else None


def learned(policy, seed: int):
    """A torch `Policy` as `act(state, intent)`, drawing from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return lambda s, intent: policy.act(torch.from_numpy(s).float(), generator=generator).numpy()


def team(assistant, dims: torch.Tensor, seed: int, conditioned: bool = True):
    """The pilot (its intention from the episode) on `dims`, `assistant` on the rest."""
    pilot = Pilot(seed)
    generator = torch.Generator().manual_seed(seed)
    shared = SharedAutonomy(pilot, assistant, dims, conditioned=conditioned)

    def act(s, intent):
        pilot.intent = intent
        return shared.act(torch.from_numpy(s).float(), generator=generator).numpy()
    return act


def demonstrator(seed: int):
    pilot = Pilot(seed)

    def act(s, intent):
        pilot.intent = intent
        return pilot.act(torch.from_numpy(s).float()).numpy()
    return act


def demonstrations(episodes: int, seed: int, folder: Path):
    """The demonstrator's first `episodes` episodes (seeded) recorded as a table in `folder`:
    (gates passed per episode, the table as a Dataset with 5% of its rows held out, its rows)."""
    passed, (states, actions), _ = rollout(demonstrator(seed), range(DEMO_SEEDS, DEMO_SEEDS + episodes))
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "demonstrations.csv"
    write_table(table, STATE_COLUMNS + ACTION_COLUMNS, np.hstack([states, actions]))
    return passed, load_table(table, valid_fraction=0.05, test_fraction=0.0, seed=seed,
                              numeric=STATE_COLUMNS + ACTION_COLUMNS), len(states)


def policies(best: dict, seed: int) -> dict:
    """Every row of the table: name -> act."""
    rows = {"demonstrator": demonstrator(seed + 1)}
    rows.update({f"{name} alone": learned(policy, seed) for name, policy in best.items()})
    for dim, mask in ARRANGEMENTS.items():
        rest = ", ".join(c for c, m in zip(ACTION_COLUMNS, mask) if not m)
        lead = f"operator {dim} + "
        rows[lead + f"MAC assistant ({rest})"] = team(best["MAC"], mask, seed)
        rows[lead + "MAC assistant ignoring the operator"] = team(best["MAC"], mask, seed, conditioned=False)
        rows[lead + "mixture-density assistant (its exact conditional)"] = team(best["BC (mixture density)"], mask, seed)
        rows[lead + "mixture-density assistant ignoring the operator"] = team(
            best["BC (mixture density)"], mask, seed, conditioned=False)
        rows[lead + "BC (MSE) assistant"] = team(best["BC (MSE)"], mask, seed)
        rows[lead + "BC (discretised) assistant"] = team(best["BC (discretised)"], mask, seed)
        if "diffusion policy" in best:
            rows[lead + "diffusion-policy assistant (inpainting)"] = team(best["diffusion policy"], mask, seed)
    return rows


def assistant_tuning(trials: list, kept: list, results: dict, args, tune_seeds) -> list[str]:
    """Both conditioning assistants tuned for the assistant's role itself: every configuration
    of MAC's and the mixture density's grid (the same budget, 2 lrs x 2 knob values), scored
    as the operator's conditioned assistant on the tuning episodes, the best of each method
    then flown on the evaluation episodes. Adds those rows to `results`; returns markdown."""
    lines = ["", "Both conditioning assistants tuned as assistants (each configuration of the grid scored "
             f"with the operator on {args.tune_episodes} tuning episodes; the best of each method on the "
             f"{args.episodes} evaluation episodes):", "",
             "| operator on | method | lr | knob | assistant's tuning reward |", "|---|---|---|---|---|"]
    gaps = []
    for dim, mask in ARRANGEMENTS.items():
        chosen = {}
        for method in ("MAC", "BC (mixture density)"):
            for (name, lr, knob, *_), policy in zip(trials, kept):
                if name == method:
                    value = rollout(team(policy, mask, args.seed), tune_seeds)[0].mean()
                    lines.append(f"| {dim} | {method} | {lr:g} | {knob} | {value:.3f} |")
                    if method not in chosen or value > chosen[method][0]:
                        chosen[method] = (value, policy, f"lr {lr:g}, {knob}")
        for method, (_, policy, config) in chosen.items():
            name = f"operator {dim} + {method} assistant tuned as an assistant ({config})"
            results[name] = rollout(team(policy, mask, args.seed), range(args.episodes))[0]
            print(f"{name:70s} {results[name].mean():6.2f} ± {mean_se(results[name])[1]:.2f}")
        mac, mdn = (results[k] for k in list(results)[-2:])
        gaps.append("| {} | {:.2f} ± {:.2f} | {:.2f} ± {:.2f} | {:+.2f} ± {:.2f} |".format(
            dim, *mean_se(mac), *mean_se(mdn), *mean_se(mac - mdn)))
    return lines + ["", "| operator on | MAC assistant (tuned as one) | mixture density, exact conditional "
                    "(tuned as one) | MAC's gap ± SE (paired) |", "|---|---|---|---|"] + gaps


def plot_paths(best: dict, path: Path, seed: int) -> None:
    """One episode (seed 0) seen from behind (y, z) and from above (x, y) under three policies."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    flights = {"demonstrator": demonstrator(seed + 1),
               "operator vy + MAC assistant": team(best["MAC"], ARRANGEMENTS["vy"], seed),
               "operator vy + MAC ignoring the operator": team(best["MAC"], ARRANGEMENTS["vy"], seed, False)}
    if GATES.shape[1] == 3:
        views = [(1, 2, "y", "z", "from behind: the routes move y and z together"), (0, 1, "x", "y", "from above")]
    else:
        views = [(2 * i, 2 * i + 1, f"x{i + 1}", f"y{i + 1}", f"craft {i + 1}") for i in range(GATES.shape[1] // 2)]
    fig, axes = plt.subplots(1, len(views), figsize=(5 * len(views), 4))
    for name, act in flights.items():
        passed, _, where = rollout(act, [0], paths=True)
        where = where[:, 0]
        for ax, (i, j, *_) in zip(axes, views):
            ax.plot(where[:, i], where[:, j], marker=".", label=f"{name}: {passed[0]:.0f} gates")
    for ax, (_, _, x, y, title) in zip(axes, views):
        ax.set(xlabel=x, ylabel=y, title=title)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, "gates", demos=200, episodes=500, tune_episodes=100, steps=1500, width=128)
    parser.add_argument("--quick", action="store_true", help="100 demos, 300 steps, 100 episodes")
    parser.add_argument("--diffusion", action="store_true",
                        help="add a diffusion policy (DDPM over the joint action; as an assistant it inpaints "
                             "the operator's dims) with its own 2 x 2 grid (denoising steps 20 or 100)")
    parser.add_argument("--task", choices=list(TASKS), default="pair",
                        help="pair: two next gates (far-upper-left, near-lower-right); parity: four, at the "
                             "cube's corners of even parity, every dimension revealing the route alike; "
                             "formation: three planar craft, three gates each (6 action dims, 27 joint modes); "
                             "formation4: four such craft (8 action dims, 81 joint modes)")
    parser.add_argument("--mixture-components", type=int, nargs=2, default=list(FORMATION_COMPONENTS),
                        help="the mixture density's two components values on the formation (its knob's grid)")
    args = parser.parse_args()
    use_task(args.task)
    stem = ("gates" if args.task == "pair" else f"gates_{args.task}") + \
        ("" if args.min_log_scale is None else f"_floor{args.min_log_scale:g}") + ("_diffusion" if args.diffusion else "")
    if args.task.startswith("formation"):
        # The floor from the demonstrator's noise (a third of it, in each column's standardised
        # units: log((0.05 / 3) / 0.27..0.32) = -2.8..-2.95), for both mixtures alike; and the
        # mixture density's components grid above the formation's 27 joint modes.
        args.min_log_scale = -3.0 if args.min_log_scale is None else args.min_log_scale
        methods = tuple(replace(m, values=tuple(args.mixture_components)) if m.cls is MixtureDensityPolicy else m
                        for m in METHODS)
    else:
        methods = METHODS
    if args.quick:
        args.demos, args.steps, args.episodes, args.tune_episodes = 100, 300, 100, 50
    set_threads(args.threads)
    print(machine(torch.device("cpu")))
    started = time.perf_counter()

    demo_passed, data, rows = demonstrations(args.demos, args.seed, args.runs)
    print(f"demonstrations: {args.demos} episodes, {rows} rows, gates passed "
          "{:.2f} ± {:.2f}".format(*mean_se(demo_passed)))

    tune_seeds = range(TUNE_SEEDS, TUNE_SEEDS + args.tune_episodes)
    lrs, methods = grid(args, methods + ((DIFFUSION,) if args.diffusion else ()))
    kept = []   # every configuration's policy, in the order of `trials`

    def score(policy):
        kept.append(policy)
        return rollout(learned(policy, args.seed), tune_seeds)[0].mean()
    best, trials = tune(data, len(STATE_COLUMNS), dict(width=args.width, depth=args.depth), score,
                        args.steps, args.batch_size, args.seed, lrs=lrs, methods=methods)

    results = {}
    for name, act in policies(best, args.seed).items():
        results[name] = rollout(act, range(args.episodes))[0]
        print(f"{name:70s} {results[name].mean():6.2f} ± {mean_se(results[name])[1]:.2f}")
    tuned = [] if args.single else assistant_tuning(trials, kept, results, args, tune_seeds)
    mac = {dim: results[f"operator {dim} + MAC assistant ({', '.join(c for c, m in zip(ACTION_COLUMNS, mask) if not m)})"]
           for dim, mask in ARRANGEMENTS.items()}
    command = (f"python benchmarks/gates.py --threads {args.threads} --demos {args.demos} --episodes "
               f"{args.episodes} --tune-episodes {args.tune_episodes} --steps {args.steps} {grid_flags(args)}"
               + ("" if args.task == "pair" else f" --task {args.task}") + (" --diffusion" if args.diffusion else "")
               + (f" --mixture-components {' '.join(map(str, args.mixture_components))}" if args.task.startswith("formation") else ""))
    lines = [f"# Gates: a coupled, multimodal demonstrator ({len(ACTION_COLUMNS)} action dimensions, "
             f"{len(GATES)} next gates)", "",
             machine(torch.device("cpu")), "",
             f"Command: `{command}` (width {args.width}, depth {args.depth}, batch {args.batch_size}, "
             f"seed {args.seed}); {rows} demonstration rows; {time.perf_counter() - started:.0f} s in all.", "",
             "Reward: gates passed per episode (0..10).", ""]
    if args.task.startswith("formation"):
        lines += [f"Both mixtures' log-scale floor: {args.min_log_scale:g} (a third of the demonstrator's noise "
                  "in each column's standardised units); the mixture density's components grid: "
                  f"{' or '.join(map(str, args.mixture_components))} (the formation has {len(GATES)} joint modes); MAC's: 3 or 10.", ""]
    lines += results_table(results, "BC (MSE) alone", "gates passed")
    for dim, mask in ARRANGEMENTS.items():
        lines += ["", f"Operator on {dim}: the MAC assistant's paired gap to each other assistant", "",
                  "| other assistant | gap ± SE | gap / SE |", "|---|---|---|"]
        for name, values in results.items():
            if name.startswith(f"operator {dim} + ") and values is not mac[dim]:
                gap, se = mean_se(mac[dim] - values)
                lines.append(f"| {name} | {gap:+.2f} ± {se:.2f} | {gap / se if se else float('inf'):.1f} |")
    lines += tuned + ["", grid_note(args, "gates passed"), ""] + tuning_table(trials)
    save(args.out, stem, lines, command, results, trials, f"Gates ({args.task}): full and shared autonomy",
         "gates passed per episode")
    plot_paths(best, args.out / f"{stem}_paths.png", args.seed)
    print(f"wrote {args.out / stem}.md, .json, .png, {stem}_paths.png")


if __name__ == "__main__":
    main()
