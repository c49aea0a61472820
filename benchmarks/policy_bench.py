"""What the policy benchmarks share: the methods and their equal tuning budget, paired
standard errors, the results table, a bar plot and a frame strip.

Every method trains on the same rows, the same backbone (a residual MLP of the same width
and depth), the same steps and batch, and gets the same tuning budget: a grid of two
learning rates × two values of one knob of its own, each configuration scored on tuning
episodes (seeds apart from the evaluation seeds) and the best kept.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from anyorder.control import (ConditionalPolicy, DiffusionPolicy, DiscretePolicy, MeanOfDraws, MixtureDensityPolicy,
                              RegressionPolicy, fit)
from common import add_threads_flag


@dataclass(frozen=True)
class Method:
    """A policy class, and the knob its grid varies (a constructor option, or fit's weight_decay).
    `draws` > 0 decodes the trained policy by the mean of that many of its draws (`MeanOfDraws`)
    instead of one draw: the same training, another way to act. `options` are fixed
    constructor options ((name, value) pairs) every configuration shares."""
    name: str
    cls: type
    knob: str
    values: tuple
    draws: int = 0
    options: tuple = ()

    def build(self, data, state_dim: int, sizes: dict, value):
        options = dict(self.options) if self.knob == "weight_decay" else {**dict(self.options), self.knob: value}
        return self.cls.for_table(data, state_dim, **sizes, **options)


METHODS = (
    Method("MAC", ConditionalPolicy, "components", (3, 10)),
    Method("BC (MSE)", RegressionPolicy, "weight_decay", (0.0, 0.01)),
    Method("BC (mixture density)", MixtureDensityPolicy, "components", (3, 10)),
    Method("BC (discretised)", DiscretePolicy, "bins", (11, 31)),
)
LRS = (1e-3, 3e-3)
DIFFUSION = Method("diffusion policy", DiffusionPolicy, "steps", (20, 100))   # denoising steps T
MAC_MEAN = Method("MAC (mean of 16 draws)", ConditionalPolicy, "components", (3, 10), draws=16)


def add_flags(parser, name: str, demos: int, episodes: int, tune_episodes: int, steps: int, width: int) -> None:
    """The flags every policy benchmark takes, with its own defaults; runs go under runs/`name`."""
    here = Path(__file__).resolve().parent
    parser.add_argument("--demos", type=int, default=demos, help="demonstration episodes")
    parser.add_argument("--episodes", type=int, default=episodes, help="evaluation episodes per policy")
    parser.add_argument("--tune-episodes", type=int, default=tune_episodes,
                        help="episodes scoring each tuning configuration")
    parser.add_argument("--steps", type=int, default=steps, help="training steps of every configuration")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="the tuning grid's learning rates")
    parser.add_argument("--single", action="store_true",
                        help="one configuration per method (the first lr, the first value of its knob), untuned")
    parser.add_argument("--min-log-scale", type=float,
                        help="the log-scale floor (standardised units) of every mixture's components, MAC's "
                             "and the mixture density's alike (default: the classes' own, -7)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=here.parent / "runs" / name)
    parser.add_argument("--out", type=Path, default=here / "results", help="where the tables and plots go")
    add_threads_flag(parser)


def grid(args, methods=METHODS) -> tuple[tuple, tuple]:
    """(learning rates, methods) of the tuning grid the flags ask for; `--min-log-scale` goes
    to every method with a mixture head (a constructor option `min_log_scale`)."""
    if args.min_log_scale is not None:
        methods = tuple(replace(m, options=m.options + (("min_log_scale", args.min_log_scale),))
                        if "min_log_scale" in inspect.signature(m.cls).parameters else m for m in methods)
    if args.single:
        return tuple(args.lrs[:1]), tuple(replace(m, values=m.values[:1]) for m in methods)
    return tuple(args.lrs), tuple(methods)


def grid_note(args, what: str) -> str:
    if args.single:
        return f"Untuned: one configuration per method (lr {args.lrs[0]:g} and the first value of its knob)."
    return (f"Tuning (each method: {len(args.lrs)} learning rate(s) × 2 values of its knob; the best by "
            f"mean {what} alone on {args.tune_episodes} tuning episodes):")


def grid_flags(args) -> str:
    """The grid's flags as a command line would give them."""
    return (f"--lrs {' '.join(f'{lr:g}' for lr in args.lrs)}" + (" --single" if args.single else "")
            + ("" if args.min_log_scale is None else f" --min-log-scale {args.min_log_scale:g}"))


def mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def tune(data, state_dim: int, sizes: dict, score, steps: int, batch_size: int, seed: int,
         lrs=LRS, methods=METHODS, log=print) -> tuple[dict, list]:
    """Train every method on its grid, score each configuration with `score(policy) -> float`
    (mean reward on tuning episodes) and keep the best. Methods that differ only in decoding
    (`Method.draws`) share one training of each configuration (training is seeded, so it
    would give the same weights again). Returns ({method name: policy},
    [(method, lr, knob value, score, seconds)])."""
    best, trials, trained = {}, [], {}
    for method in methods:
        grid = list(itertools.product(lrs, method.values))
        for lr, value in grid:
            tick = time.perf_counter()
            key = (method.cls, method.knob, value, lr, method.options)
            if key not in trained:
                torch.manual_seed(seed)
                trained[key] = method.build(data, state_dim, sizes, value)
                decay = value if method.knob == "weight_decay" else 0.0
                fit(trained[key], data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=False,
                    weight_decay=decay)
            policy = MeanOfDraws(trained[key], method.draws) if method.draws else trained[key]
            result = score(policy) if len(grid) > 1 else float("nan")   # nothing to choose between
            trials.append((method.name, lr, f"{method.knob}={value}", result, time.perf_counter() - tick))
            log(f"  {method.name:22s} lr {lr:g} {method.knob}={value}: tuning reward {result:.3f} "
                f"({trials[-1][-1]:.0f} s)")
            if method.name not in best or result > best[method.name][0]:   # False for NaN: the first stays
                best[method.name] = (result, policy)
    return {name: policy for name, (_, policy) in best.items()}, trials


def results_table(results: dict, baseline: str, unit: str) -> list[str]:
    """Markdown rows: mean ± SE per policy, and the paired gap to `baseline` ± SE."""
    count = len(next(iter(results.values())))
    lines = [f"| policy | {unit} ± SE ({count} episodes) | gap to {baseline} ± SE (paired) |", "|---|---|---|"]
    for name, values in results.items():
        mean, se = mean_se(values)
        gap = "—" if name == baseline else "{:+.2f} ± {:.2f}".format(*mean_se(values - results[baseline]))
        lines.append(f"| {name} | {mean:.2f} ± {se:.2f} | {gap} |")
    return lines


def tuning_table(trials: list) -> list[str]:
    lines = ["| method | lr | knob | tuning reward | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {lr:g} | {knob} | {r:.3f} | {s:.0f} |" for m, lr, knob, r, s in trials]
    return lines


def save(out, name: str, lines: list, command: str, results: dict, trials: list, title: str, xlabel: str) -> None:
    """Print the table and write it (`name`.md), the per-episode rewards (`name`.json) and a
    bar plot (`name`.png) under `out`."""
    text = "\n".join(lines) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(
        {"command": command, "results": {k: v.tolist() for k, v in results.items()}, "tuning": trials}, indent=1))
    bar_plot(results, out / f"{name}.png", title, xlabel)


def bar_plot(results: dict, path, title: str, xlabel: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    stats = [mean_se(results[n]) for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(names)))
    ax.barh(range(len(names)), [m for m, _ in stats], xerr=[2 * s for _, s in stats], color="#4c72b0", capsize=3)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{xlabel} (error bars: ±2 SE)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def frame_strip(frames: list, path, count: int = 6, shrink: int = 2) -> None:
    """`count` evenly spaced frames of an episode, side by side, as one PNG."""
    from PIL import Image
    picks = [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]
    tiles = [Image.fromarray(f).resize((f.shape[1] // shrink, f.shape[0] // shrink)) for f in picks]
    gap = 4
    strip = Image.new("RGB", (count * (tiles[0].width + gap) - gap, tiles[0].height), "white")
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (tile.width + gap), 0))
    strip.save(path)
