"""What the policy benchmarks share: the methods and their equal tuning budget, paired
standard errors, the results table, a bar plot and a frame strip.

Every method trains on the same rows, the same backbone (a residual MLP of the same width
and depth), the same steps and batch, and gets the same tuning budget: a grid of two
learning rates × two values of one knob of its own, each configuration scored on tuning
episodes (seeds apart from the evaluation seeds) and the best kept.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from anyorder.control import ConditionalPolicy, DiscretePolicy, MixtureDensityPolicy, RegressionPolicy, fit


@dataclass(frozen=True)
class Method:
    """A policy class, and the knob its grid varies (a constructor option, or fit's weight_decay)."""
    name: str
    cls: type
    knob: str
    values: tuple

    def build(self, data, state_dim: int, sizes: dict, value):
        options = {} if self.knob == "weight_decay" else {self.knob: value}
        return self.cls.for_table(data, state_dim, **sizes, **options)


METHODS = (
    Method("MAC", ConditionalPolicy, "components", (3, 10)),
    Method("BC (MSE)", RegressionPolicy, "weight_decay", (0.0, 0.01)),
    Method("BC (mixture density)", MixtureDensityPolicy, "components", (3, 10)),
    Method("BC (discretised)", DiscretePolicy, "bins", (11, 31)),
)
LRS = (1e-3, 3e-3)


def mean_se(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def tune(data, state_dim: int, sizes: dict, score, steps: int, batch_size: int, seed: int,
         lrs=LRS, methods=METHODS, log=print) -> tuple[dict, list]:
    """Train every method on its grid, score each configuration with `score(policy) -> float`
    (mean reward on tuning episodes) and keep the best. Returns ({method name: policy},
    [(method, lr, knob value, score, seconds)])."""
    best, trials = {}, []
    for method in methods:
        for lr, value in itertools.product(lrs, method.values):
            tick = time.perf_counter()
            torch.manual_seed(seed)
            policy = method.build(data, state_dim, sizes, value)
            decay = value if method.knob == "weight_decay" else 0.0
            fit(policy, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=False,
                weight_decay=decay)
            result = score(policy)
            trials.append((method.name, lr, f"{method.knob}={value}", result, time.perf_counter() - tick))
            log(f"  {method.name:22s} lr {lr:g} {method.knob}={value}: tuning reward {result:.3f} "
                f"({trials[-1][-1]:.0f} s)")
            if method.name not in best or result > best[method.name][0]:
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
