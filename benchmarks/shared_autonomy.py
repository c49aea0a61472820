"""Shared autonomy on LunarLanderContinuous: MAC as policy and as assistant vs behaviour cloning.

The MAC paper's robotics protocol, on an environment that runs offline (gymnasium's Box2D
lunar lander; `pip install -e .[control]`):
  - the demonstrator is gymnasium's heuristic lander flown with on/off thrusters: each step
    it fires the main engine at full power with probability min(1, 6 × the heuristic's hover
    error) and a side engine with probability min(1, 4 × its angle error), pulse-width
    modulation as real reaction-control thrusters do. Its action distribution given the
    state is a two- or three-point law, whose mean is an action it never takes; the
    environment reads a side-engine command with |a| <= 0.5 as "off", and the side duty
    cycles are mostly below one half, so a regressor's mean side command mostly stays "off";
  - BC: an MSE regressor on the same residual MLP, trained on the same rows for the same
    steps; MAC: `anyorder.control.ConditionalPolicy` (mixture-of-Gaussians head);
  - full autonomy (BC alone, MAC alone) and shared autonomy: BC as a proxy operator for one
    action dimension, MAC as the assistant drawing the other from p(a_rest | s, a_operator);
  - the demonstrator (and gymnasium's own continuous heuristic) as references.
Every policy flies the same seeded episodes (seeds 0..N-1; demonstrations use seeds from
100000 on), so the gaps to BC are paired. It prints mean episode return ± standard error,
and writes a table (results/shared_autonomy.md), a bar plot (results/shared_autonomy.png) and
a frame strip of one assisted episode (results/shared_autonomy_frames.png).

    python benchmarks/shared_autonomy.py --threads 1            # 200 demos, 3000 steps, 200 episodes; ~14 min
    python benchmarks/shared_autonomy.py --quick --threads 1    # a smoke run, about a minute
"""

from __future__ import annotations

import argparse
import importlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from anyorder.control import ConditionalPolicy, RegressionPolicy, SharedAutonomy, fit
from anyorder.data.tables import load_table, write_table
from common import add_threads_flag, machine, set_threads
from policy_bench import bar_plot, frame_strip, mean_se

HERE = Path(__file__).resolve().parent
ENV = "LunarLanderContinuous-v3"
STATE_COLUMNS = ["x", "y", "vx", "vy", "angle", "spin", "leg_left", "leg_right"]
ACTION_COLUMNS = ["main", "side"]
DEMO_SEEDS = 100_000


def heuristic_errors(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gymnasium's heuristic lander, vectorised over states `[N, 8]`: its hover and angle
    errors (the continuous heuristic acts clip(20 hover - 1, -20 angle))."""
    angle_target = np.clip(s[:, 0] * 0.5 + s[:, 2] * 1.0, -0.4, 0.4)
    hover_target = 0.55 * np.abs(s[:, 0])
    angle = (angle_target - s[:, 4]) * 0.5 - s[:, 5] * 1.0
    hover = (hover_target - s[:, 1]) * 0.5 - s[:, 3] * 0.5
    contact = (s[:, 6] > 0) | (s[:, 7] > 0)
    return np.where(contact, -s[:, 3] * 0.5, hover), np.where(contact, 0.0, angle)


def heuristic(s: np.ndarray) -> np.ndarray:
    hover, angle = heuristic_errors(s)
    return np.clip(np.stack([hover * 20 - 1, -angle * 20], 1), -1, 1)


def pulse_pilot(rng: np.random.Generator, main_gain: float = 6.0, side_gain: float = 4.0):
    """The demonstrator: on/off thrusters with duty cycles proportional to the heuristic's errors."""
    def act(s: np.ndarray) -> np.ndarray:
        hover, angle = heuristic_errors(s)
        main = np.where(rng.random(len(s)) < np.clip(main_gain * hover, 0, 1), 1.0, -1.0)
        duty = np.clip(side_gain * angle, -1, 1)
        side = np.where(rng.random(len(s)) < np.abs(duty), -np.sign(duty), 0.0)
        return np.stack([main, side], 1)
    return act


def torch_policy(policy, seed: int):
    """numpy states -> numpy actions through a `Policy` drawing from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return lambda s: policy.act(torch.from_numpy(s).float(), generator=generator).numpy().astype(np.float64)


def rollout(gym, act, seeds, record: bool = False, render: bool = False):
    """Fly one episode per seed in lockstep, the policy batched over the episodes still
    running. Returns (returns `[N]`, steps `[N]`, (states, actions) if record, frames if render)."""
    envs = [gym.make(ENV, render_mode="rgb_array" if render else None) for _ in seeds]
    obs = np.stack([env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds)]).astype(np.float64)
    returns, steps, done = np.zeros(len(envs)), np.zeros(len(envs), int), np.zeros(len(envs), bool)
    states, actions, frames = [], [], []
    while not done.all():
        live = np.flatnonzero(~done)
        action = act(obs[live])
        if record:
            states.append(obs[live].copy())
            actions.append(action.copy())
        if render:
            frames.append(envs[0].render())
        for row, i in enumerate(live):
            o, r, terminated, truncated, _ = envs[i].step(action[row])
            obs[i], returns[i], steps[i] = o, returns[i] + r, steps[i] + 1
            done[i] = terminated or truncated
    for env in envs:
        env.close()
    recorded = (np.concatenate(states), np.concatenate(actions)) if record else None
    return returns, steps, recorded, frames


def check_heuristic(gym) -> None:
    """Our vectorised heuristic must act as gymnasium's own on real states."""
    from gymnasium.envs.box2d.lunar_lander import heuristic as reference
    env = gym.make(ENV)
    _, _, (states, _), _ = rollout(gym, heuristic, [7], record=True)
    ours = heuristic(states)
    theirs = np.stack([reference(env, s) for s in states])
    if not np.allclose(ours, theirs, atol=1e-9):
        raise SystemExit("the vectorised heuristic differs from gymnasium's: "
                         f"max gap {np.abs(ours - theirs).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=int, default=200, help="demonstration episodes")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per policy")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of each model")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--min-log-scale", type=float, default=-2.0,
                        help="floor of MAC's component log-scales (standardised units): the pilot's "
                             "actions are exact values, onto which a component would otherwise collapse")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "shared_autonomy")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the table and plots go")
    parser.add_argument("--quick", action="store_true", help="20 demos, 300 steps, 20 episodes")
    add_threads_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.demos, args.steps, args.episodes = 20, 300, 20
    set_threads(args.threads)
    try:
        import gymnasium as gym
        importlib.import_module("Box2D")   # gymnasium's lunar lander needs it
    except ImportError as error:
        raise SystemExit(f"this benchmark needs gymnasium with Box2D: pip install -e .[control] ({error})")
    print(machine(torch.device("cpu")))
    check_heuristic(gym)
    started = time.perf_counter()

    rng = np.random.default_rng(args.seed)
    demo_returns, _, (states, actions), _ = rollout(
        gym, pulse_pilot(rng), range(DEMO_SEEDS, DEMO_SEEDS + args.demos), record=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    table = args.runs / "demonstrations.csv"
    write_table(table, STATE_COLUMNS + ACTION_COLUMNS, np.hstack([states, actions]))
    data = load_table(table, valid_fraction=0.05, test_fraction=0.0, seed=args.seed,
                      numeric=STATE_COLUMNS + ACTION_COLUMNS)      # the binary leg contacts too
    print(f"demonstrations: {args.demos} episodes, {len(states)} rows, return "
          "{:.1f} ± {:.1f}".format(*mean_se(demo_returns)))

    sizes = dict(width=args.width, depth=args.depth)
    torch.manual_seed(args.seed)
    mac = ConditionalPolicy.for_table(data, len(STATE_COLUMNS), components=args.components,
                                         min_log_scale=args.min_log_scale, **sizes)
    torch.manual_seed(args.seed)
    bc = RegressionPolicy.for_table(data, len(STATE_COLUMNS), **sizes)
    for name, model in (("MAC", mac), ("BC", bc)):
        tick = time.perf_counter()
        losses = fit(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        print(f"{name}: {args.steps} steps in {time.perf_counter() - tick:.0f} s, "
              f"final loss {np.mean(losses[-100:]):.3f}")
    torch.save({"mac": mac.state_dict(), "bc": bc.state_dict()}, args.runs / "policies.pt")

    main_only, side_only = torch.tensor([True, False]), torch.tensor([False, True])
    policies = {
        "demonstrator (pulse pilot)": pulse_pilot(np.random.default_rng(args.seed + 1)),
        "gymnasium heuristic (continuous)": heuristic,
        "BC alone": torch_policy(bc, args.seed),
        "MAC alone": torch_policy(mac, args.seed),
        "BC operator (side) + MAC assistant (main)": torch_policy(SharedAutonomy(bc, mac, side_only), args.seed),
        "BC operator (main) + MAC assistant (side)": torch_policy(SharedAutonomy(bc, mac, main_only), args.seed),
    }
    seeds = range(args.episodes)
    results = {}
    for name, act in policies.items():
        tick = time.perf_counter()
        returns, steps, _, _ = rollout(gym, act, seeds)
        results[name] = returns
        print(f"{name:44s} {returns.mean():8.1f} ± {returns.std(ddof=1) / math.sqrt(len(returns)):5.1f}"
              f"   ({steps.mean():.0f} steps per episode, {time.perf_counter() - tick:.0f} s)")

    base = results["BC alone"]
    lines = [f"# {ENV}: full and shared autonomy", "",
             f"{machine(torch.device('cpu'))}", "",
             f"Command: `python benchmarks/shared_autonomy.py --threads {args.threads} --demos {args.demos} "
             f"--episodes {args.episodes} --steps {args.steps}` (width {args.width}, depth {args.depth}, "
             f"{args.components} components, log-scale floor {args.min_log_scale}, batch {args.batch_size}); {len(states)} demonstration rows; "
             f"{time.perf_counter() - started:.0f} s in all.", "",
             f"| policy | mean return ± SE ({args.episodes} episodes) | gap to BC alone ± SE (paired) |",
             "|---|---|---|"]
    for name, returns in results.items():
        mean, se = mean_se(returns)
        gap, gap_se = mean_se(returns - base)
        lines.append(f"| {name} | {mean:.1f} ± {se:.1f} | " + ("—" if name == "BC alone" else f"{gap:+.1f} ± {gap_se:.1f}") + " |")
    print("\n".join(lines[6:]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_autonomy.md").write_text("\n".join(lines) + "\n")
    bar_plot(results, args.out / "shared_autonomy.png", f"{ENV}: full and shared autonomy", "mean episode return")
    assisted = torch_policy(SharedAutonomy(bc, mac, main_only), args.seed)
    _, _, _, frames = rollout(gym, assisted, [0], render=True)
    frame_strip(frames, args.out / "shared_autonomy_frames.png")
    print(f"wrote {args.out / 'shared_autonomy.md'}, shared_autonomy.png, shared_autonomy_frames.png")


if __name__ == "__main__":
    main()
