"""Shared autonomy on FrankaKitchen-v1 (gymnasium-robotics): the MAC paper's robotics table, with scripted demonstrations.

The paper's demonstrations (D4RL / Minari) cannot be downloaded here, so a scripted
demonstrator makes them: a damped-least-squares controller drives the end-effector site
toward waypoints at the task sites, holding the gripper's starting orientation, and turns
the Cartesian velocity into the 9 joint-velocity actions (7 arm joints, 2 fingers). Each
episode does three subtasks — microwave (grasp the handle, pull it along the door's arc),
light switch (push the lever left), slide cabinet (push the door right) — in a random order,
each approached in one of two styles (over the top or straight in) at one of two speeds (0.5 or 0.8 m/s), with
a little action noise: the demonstrations are multimodal as human ones are. The kettle is
left out: the scripted grasp tips it over (see docs/policies.md). While demonstrating, the
environment executes each action plus N(0, dart²) noise and the table records the script's
own action (DART), so the rows also show how to return to the script's paths.

The state is the robot's joint positions and velocities (18) and the three tasks' object
joints (4); reward = subtasks completed per episode (0..3), episodes of 550 steps.
Policies (same backbone, rows, steps and tuning budget; see policy_bench.py): MAC, BC (MSE),
BC (mixture density), BC (discretised) and, with `--diffusion`, a diffusion policy (DDPM over
the joint action, its own 2 x 2 grid: denoising steps 20 or 100) alone, and shared autonomy
with BC (MSE) as a proxy operator on one part of the joints and an assistant on the rest (MAC
conditioned, MAC ignoring the operator, the mixture density's exact conditional, the
diffusion policy inpainting the operator's joints), both arrangements: the shoulder and
elbow (joints 1-4) or the wrist and fingers (joints 5-7, fingers 1-2).
Every policy runs the same seeded episodes (seeds 0..N-1; tuning 10000+, demonstrations
100000+), so gaps are paired. Needs `pip install -e .[kitchen]` (mujoco==3.3.7); the frame
strip needs `MUJOCO_GL=osmesa` and libosmesa6 on a machine without a display.

    MUJOCO_GL=osmesa python benchmarks/kitchen.py --threads 1            # 60 demos, 3000 steps, 20 episodes, < 1 h
    MUJOCO_GL=osmesa python benchmarks/kitchen.py --reuse-demos --min-log-scale -4.6 --diffusion --threads 1
    MUJOCO_GL=osmesa python benchmarks/kitchen.py --quick --threads 1    # a smoke run, minutes
    MUJOCO_GL=osmesa python benchmarks/kitchen.py --decoding --reuse-demos --single --lrs 0.003 --threads 1   # 22 min

`--min-log-scale F` floors the log-scales of both mixtures' components alike (MAC's and the
mixture density's); the run prints the floor the demonstrator's noise suggests (`noise_floor`:
log(0.02 / (3 x the widest action column's std)), -4.57 on the default demonstrations), and
its files are named with `_floorF` (and `_diffusion` with `--diffusion`).

`--decoding` asks whether MAC alone loses to BC because it samples: the same demonstrations
and seeds, and three methods on the same grid — MAC drawing its action (as above), MAC
decoded by the mean of 16 draws (E[a | s], BC's own target; the same trained weights), and
BC (MSE) — without the shared-autonomy rows; results go to kitchen_decoding.md. The command
above is the reduced form: the default run's recorded demonstrations, and one configuration
per method, the one the default run's grid chose (lr 3e-3 and each method's first knob value).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from anyorder.control import MeanOfDraws, SharedAutonomy
from anyorder.data.tables import load_table, write_table
from common import machine, set_threads
from policy_bench import (DIFFUSION, MAC_MEAN, METHODS, add_flags, frame_strip, grid, grid_flags, grid_note, mean_se,
                          results_table, save, tune, tuning_table)

TASKS = ("microwave", "light switch", "slide cabinet")
OBSERVED = list(range(18)) + [26, 27, 28, 31]   # robot q, q̇; light switch (2), slide cabinet, microwave
JOINTS = [f"joint{i}" for i in range(1, 8)] + ["finger1", "finger2"]
STATE_COLUMNS = [f"q_{j}" for j in JOINTS] + [f"v_{j}" for j in JOINTS] + \
    ["light_switch", "light_joint", "slide_cabinet", "microwave"]
MAX_STEPS = 550
NOISE = 0.02                                    # std of the script's own action noise (recorded)
DEMO_SEEDS, TUNE_SEEDS = 100_000, 10_000
ARRANGEMENTS = {"1-4": torch.tensor([True] * 4 + [False] * 5),
                "5-9": torch.tensor([False] * 4 + [True] * 5)}


def make_env(gym, render: bool = False):
    return gym.make("FrankaKitchen-v1", tasks_to_complete=list(TASKS), max_episode_steps=MAX_STEPS,
                    render_mode="rgb_array" if render else None)


def observe(observation: dict) -> np.ndarray:
    """The policies' state `[22]` from the environment's observation: robot joint positions
    and velocities and the tasks' object joints (with the environment's observation noise)."""
    return observation["observation"][OBSERVED]


class Script:
    """The scripted demonstrator of one episode: a queue of (target, grip, steps, tolerance,
    turn of the hand about the vertical, speed) phases built from a random subtask order and per-subtask styles, followed by
    damped-least-squares control of the end-effector site."""

    def __init__(self, env, rng: np.random.Generator, noise: float = NOISE):
        import mujoco
        self.mujoco, self.env, self.rng, self.noise = mujoco, env.unwrapped, rng, noise
        model, data = self.env.model, self.env.data
        self.site = lambda name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name)
        self.ee = self.site("end_effector")
        self.rest = data.site_xmat[self.ee].reshape(3, 3).copy()
        self.home = data.qpos[:7].copy()
        self.phases = []
        for task in rng.permutation(TASKS):
            self.phases += self.subtask(task, over=rng.random() < 0.5, speed=rng.choice([0.5, 0.8]))

    def subtask(self, task: str, over: bool, speed: float) -> list:
        """The phases of one subtask: back to the starting joints (target None), approach (over the top or straight
        in), then the motion."""
        data = self.env.data
        if task == "microwave":
            handle = data.site_xpos[self.site("microhandle_site")] + [0, 0, 0.04]
            hinge = np.array([-1.128, 0.455, handle[2]])
            radius, start = np.linalg.norm((handle - hinge)[:2]), np.arctan2(*(handle - hinge)[1::-1])
            turns = (-0.25, -0.5, -0.75, -1.0)
            arc = [hinge + [radius * np.cos(start + a), radius * np.sin(start + a), 0] for a in turns]
            approach, contact, grip = handle + [0, -0.12, 0], handle, 1.0
            motion = [(handle, -1.0, 8, 0.0, 0.0)] + [(p, -1.0, 20, 0.03, a) for p, a in zip(arc, turns)] + \
                [(arc[-1], 1.0, 4, 0.0, turns[-1]), (arc[-1] + [0.05, -0.1, 0], 1.0, 20, 0.03, 0.0)]
        elif task == "light switch":
            lever = data.site_xpos[self.site("light_site")] + [0, 0, 0.05]
            approach, contact, grip = lever + [0.10, -0.10, 0], lever + [0.06, -0.03, 0], 1.0
            motion = [(lever + [-0.10, -0.03, 0], grip, 40, 0.02, 0.0)]
        else:
            door = data.site_xpos[self.site("slide_site")]
            approach, contact, grip = door + [-0.10, -0.10, 0], door + [-0.08, 0, 0], 1.0
            motion = [(door + [0.30, 0, 0], grip, 50, 0.02, 0.0), (door + [0.30, -0.12, 0], grip, 20, 0.03, 0.0)]
        lift = [(approach + [0, -0.05, 0.08], grip, 40, 0.04, 0.0)] if over else []
        home = [(None, 1.0, 40, 0.1, 0.0)]
        phases = home + lift + [(approach, grip, 40, 0.02, 0.0), (contact, grip, 30, 0.02, 0.0)] + motion
        return [(p if p is None else np.asarray(p, dtype=np.float64), g, n, tol, turn, speed)
                for p, g, n, tol, turn in phases]

    def act(self) -> np.ndarray:
        """The next action `[9]`: DLS toward the current phase's target, holding the orientation."""
        mujoco, model, data = self.mujoco, self.env.model, self.env.data
        while self.phases:
            target, grip, steps, tol, turn, speed = self.phases[0]
            error = self.home - data.qpos[:7] if target is None else target - data.site_xpos[self.ee]
            if steps > 0 and (tol == 0 or np.linalg.norm(error) >= tol):
                self.phases[0] = (target, grip, steps - 1, tol, turn, speed)
                break
            self.phases.pop(0)
        else:                                           # done: hold still
            target, grip, turn, speed, error = data.site_xpos[self.ee], 1.0, 0.0, 0.5, np.zeros(3)
        if target is None:
            qdot = 4.0 * error * min(1.0, 2 * speed / max(np.abs(4.0 * error).max(), 1e-9))
            return self.finish(qdot, grip)
        jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jp, jr, self.ee)
        velocity = 8.0 * error
        velocity *= min(1.0, speed / max(np.linalg.norm(velocity), 1e-9))
        cos, sin = np.cos(turn), np.sin(turn)
        held = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]) @ self.rest
        gap = held @ data.site_xmat[self.ee].reshape(3, 3).T       # rotation still to make
        spin = np.array([gap[2, 1] - gap[1, 2], gap[0, 2] - gap[2, 0], gap[1, 0] - gap[0, 1]])
        jac = np.vstack([jp[:, :7], jr[:, :7]])
        qdot = jac.T @ np.linalg.solve(jac @ jac.T + 0.05 ** 2 * np.eye(6), np.concatenate([velocity, spin]))
        return self.finish(qdot, grip)

    def finish(self, qdot: np.ndarray, grip: float) -> np.ndarray:
        """Joint velocities (rad/s) and the grip -> the action `[9]` (the environment reads 2 rad/s
        per unit), with the demonstrator's noise."""
        action = np.concatenate([qdot / 2, [grip, grip]]) + self.noise * self.rng.standard_normal(9)
        return np.clip(action, -1, 1)


def completed(env) -> int:
    return len(env.unwrapped.episode_task_completions)


def demonstrate(gym, seeds, noise: float = NOISE, dart: float = 0.0):
    """Run the scripted demonstrator once per seed: (subtasks `[N]`, (states, actions)).

    With `dart` > 0 the environment executes each action plus N(0, dart²) per joint while the
    table records the script's own action (DART: Laskey et al., 2017): the script is a feedback
    law, so the rows show how to return to its paths from the states a learner's small errors
    lead to — without them behaviour cloning drifts off the paths and completes nothing."""
    scores, states, actions = [], [], []
    for seed in seeds:
        env = make_env(gym)
        observation, _ = env.reset(seed=int(seed))
        rng = np.random.default_rng(seed)
        script = Script(env, rng, noise)
        for _ in range(MAX_STEPS):
            states.append(observe(observation))
            actions.append(script.act())
            executed = actions[-1] + dart * rng.standard_normal(9) if dart > 0 else actions[-1]
            observation = env.step(np.clip(executed, -1, 1))[0]
        scores.append(completed(env))
        env.close()
    return np.array(scores, dtype=np.float64), (np.stack(states), np.stack(actions))


def rollout(gym, act, seeds, render: int = 0):
    """Run a policy `act(states [n, 22]) -> actions [n, 9]` on one episode per seed in lockstep,
    batched over the episodes. Returns (subtasks completed `[N]`, a frame of the first episode
    every `render` steps; none if 0)."""
    envs = [make_env(gym, render and i == 0) for i in range(len(seeds))]
    observations = [env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds)]
    frames = []
    for step in range(MAX_STEPS):
        actions = act(np.stack([observe(o) for o in observations]))
        if render and step % render == 0:
            frames.append(envs[0].render())
        observations = [env.step(action)[0] for env, action in zip(envs, actions)]
    scores = np.array([completed(env) for env in envs], dtype=np.float64)
    for env in envs:
        env.close()
    return scores, frames


def learned(policy, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return lambda s: policy.act(torch.from_numpy(s).float(), generator=generator).numpy().astype(np.float64)


def policies(best: dict, seed: int, arrangements=tuple(ARRANGEMENTS)) -> dict:
    rows = {f"{name} alone": learned(policy, seed) for name, policy in best.items()}
    for part in arrangements:
        mask = ARRANGEMENTS[part]
        lead = f"BC operator (joints {part}) + "
        rows[lead + "MAC assistant"] = learned(SharedAutonomy(best["BC (MSE)"], best["MAC"], mask), seed)
        rows[lead + "MAC ignoring the operator"] = learned(
            SharedAutonomy(best["BC (MSE)"], best["MAC"], mask, conditioned=False), seed)
        rows[lead + "mixture-density assistant"] = learned(
            SharedAutonomy(best["BC (MSE)"], best["BC (mixture density)"], mask), seed)
        if "diffusion policy" in best:
            rows[lead + "diffusion-policy assistant (inpainting)"] = learned(
                SharedAutonomy(best["BC (MSE)"], best["diffusion policy"], mask), seed)
    return rows


def noise_floor(data, noise: float = NOISE) -> float:
    """The log-scale floor (standardised units) the demonstrator's own noise suggests for every
    mixture: a third of the script's N(0, noise²) action noise in the widest action column's
    standardised units, log(noise / (3 max_j std_j)), so that the floor lies under every
    continuous scale in the recorded actions. A lower floor lets a component shrink onto the
    point masses the clip to ±1 leaves (the fingers' commands sit exactly at ±1 in half of
    the rows), where the likelihood grows without bound; a higher one blurs the noise itself."""
    std = torch.as_tensor(data.meta["std"], dtype=torch.float64)[len(STATE_COLUMNS):]
    return math.log(noise / (3 * float(std.max())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, "kitchen", demos=60, episodes=20, tune_episodes=6, steps=3000, width=256)
    parser.add_argument("--dart", type=float, default=0.2,
                        help="std of the noise added to the executed (not the recorded) demonstration actions")
    parser.add_argument("--operator", choices=list(ARRANGEMENTS), nargs="*", default=list(ARRANGEMENTS),
                        help="the joints the BC operator drives (one shared-autonomy arrangement each; none: no "
                             "shared-autonomy rows)")
    parser.add_argument("--decoding", action="store_true",
                        help="MAC sampled, MAC mean-decoded and BC (MSE) only, no shared autonomy: is decoding "
                             "why MAC alone loses to BC? (writes kitchen_decoding.*)")
    parser.add_argument("--reuse-demos", action="store_true",
                        help="read the demonstration table an earlier run with the same --demos and --dart wrote "
                             "under --runs instead of recording it again (the recording is seeded: same rows)")
    parser.add_argument("--diffusion", action="store_true",
                        help="add a diffusion policy (DDPM over the joint action; as an assistant it inpaints the "
                             "operator's joints) with its own 2 x 2 grid (denoising steps 20 or 100)")
    parser.add_argument("--quick", action="store_true", help="10 demos, 200 steps, 4 episodes, one lr")
    args = parser.parse_args()
    if args.quick:
        args.demos, args.steps, args.episodes, args.tune_episodes, args.lrs = 10, 200, 4, 2, args.lrs[:1]
    if args.decoding:
        args.operator = []
    set_threads(args.threads)
    try:
        import gymnasium as gym
        import gymnasium_robotics
        gym.register_envs(gymnasium_robotics)
    except ImportError as error:
        raise SystemExit(f"this benchmark needs gymnasium-robotics and mujoco: pip install -e .[kitchen] ({error})")
    print(machine(torch.device("cpu")))
    started = time.perf_counter()

    table = args.runs / "demonstrations.csv"
    if args.reuse_demos:
        if not table.exists():
            raise SystemExit(f"--reuse-demos: no demonstration table at {table}; run once without it")
        data = load_table(table, valid_fraction=0.05, test_fraction=0.0, seed=args.seed,
                          numeric=STATE_COLUMNS + JOINTS)
        rows = len(data.train) + sum(len(split) for split in data.splits.values())
        if rows != args.demos * MAX_STEPS:
            raise SystemExit(f"--reuse-demos: {table} has {rows} rows, {args.demos} demonstrations make "
                             f"{args.demos * MAX_STEPS}; run without --reuse-demos")
        demo_note = f"demonstrations: {args.demos} episodes, {rows} rows, read from {table} (recorded by an earlier run)"
    else:
        demo_scores, (states, actions) = demonstrate(gym, range(DEMO_SEEDS, DEMO_SEEDS + args.demos),
                                                     dart=args.dart)
        args.runs.mkdir(parents=True, exist_ok=True)
        write_table(table, STATE_COLUMNS + JOINTS, np.hstack([states, actions]))
        data = load_table(table, valid_fraction=0.05, test_fraction=0.0, seed=args.seed,
                          numeric=STATE_COLUMNS + JOINTS)
        rows = len(states)
        demo_note = (f"demonstrations: {args.demos} episodes, {rows} rows, the script under its DART noise "
                     "(N(0, {:g}²) on the executed actions) completes {:.2f} ± {:.2f} subtasks ({:.0f} s)".format(
                         args.dart, *mean_se(demo_scores), time.perf_counter() - started))
    print(demo_note, flush=True)
    floor_note = ("the demonstrator's noise suggests a log-scale floor of {:.2f} (log(0.02 / (3 × the widest action "
                  "column's std))); this run's floor: {}".format(
                      noise_floor(data), "the classes' own, -7" if args.min_log_scale is None else
                      f"{args.min_log_scale:g}, both mixtures alike"))
    print(floor_note, flush=True)

    tune_seeds = range(TUNE_SEEDS, TUNE_SEEDS + args.tune_episodes)
    lrs, methods = grid(args, [m for m in METHODS if m.name in ("MAC", "BC (MSE)")] + [MAC_MEAN]
                        if args.decoding else METHODS + ((DIFFUSION,) if args.diffusion else ()))
    best, trials = tune(data, len(STATE_COLUMNS), dict(width=args.width, depth=args.depth),
                        lambda policy: rollout(gym, learned(policy, args.seed), tune_seeds)[0].mean(),
                        args.steps, args.batch_size, args.seed, lrs=lrs, methods=methods)

    seeds = range(args.episodes)
    results = {} if args.decoding else {"scripted demonstrator": demonstrate(gym, seeds)[0]}
    if results:
        print(f"{'scripted demonstrator':60s} {results['scripted demonstrator'].mean():5.2f}")
    flown = policies(best, args.seed, args.operator)
    if args.decoding and best[MAC_MEAN.name].policy is not best["MAC"]:
        # the grid picked other weights for the mean: also decode the sampling winner's own weights
        flown["MAC alone, the sampled MAC's weights decoded by the mean of 16 draws"] = \
            learned(MeanOfDraws(best["MAC"], MAC_MEAN.draws), args.seed)
    for name, act in flown.items():
        tick = time.perf_counter()
        results[name] = rollout(gym, act, seeds)[0]
        print(f"{name:60s} {results[name].mean():5.2f} ± {mean_se(results[name])[1]:.2f} "
              f"({time.perf_counter() - tick:.0f} s)", flush=True)
    command = (f"MUJOCO_GL=osmesa python benchmarks/kitchen.py --threads {args.threads} --demos {args.demos} "
               f"--episodes {args.episodes} --tune-episodes {args.tune_episodes} --steps {args.steps} --dart {args.dart:g} "
               f"{grid_flags(args)} " + ("--decoding" if args.decoding else f"--operator {' '.join(args.operator)}")
               + (" --diffusion" if args.diffusion and not args.decoding else ""))
    lines = ["# FrankaKitchen-v1: full and shared autonomy, scripted demonstrations", "",
             machine(torch.device("cpu")), "",
             f"Command: `{command}` (width {args.width}, depth {args.depth}, batch {args.batch_size}, seed "
             f"{args.seed}); {rows} demonstration rows; {time.perf_counter() - started:.0f} s in all.", "",
             f"Reward: subtasks completed per episode (0..3: {', '.join(TASKS)}), {MAX_STEPS} steps.", ""]
    lines += results_table(results, "BC (MSE) alone", "subtasks")
    lines += ["", demo_note + ".", "", floor_note[0].upper() + floor_note[1:] + ".", "",
              grid_note(args, "subtasks"), ""] + tuning_table(trials)
    name = ("kitchen_decoding" if args.decoding else "kitchen") + \
        ("" if args.min_log_scale is None else f"_floor{args.min_log_scale:g}") + \
        ("_diffusion" if args.diffusion and not args.decoding else "")
    save(args.out, name, lines, command, results, trials, "FrankaKitchen-v1 (scripted demonstrations)",
         "subtasks completed")
    if not args.operator:
        print(f"wrote {args.out / name}.md, .json, .png")
        return
    try:
        team = policies(best, args.seed, args.operator[:1])[f"BC operator (joints {args.operator[0]}) + MAC assistant"]
        _, frames = rollout(gym, team, [0], render=MAX_STEPS // 10)
        frame_strip(frames, args.out / f"{name}_frames.png", count=len(frames))
        print(f"wrote {args.out / name}.md, .json, .png, {name}_frames.png")
    except Exception as error:  # rendering needs an OpenGL backend; the figures above stand without it
        print(f"no frame strip ({type(error).__name__}: {error}); set MUJOCO_GL=osmesa and install libosmesa6")


if __name__ == "__main__":
    main()
