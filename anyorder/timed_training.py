"""Training to a time budget with validation-based stopping, in memory: no run directory,
no checkpoint files (the scikit-learn imputer's `fit`).

The steps are `anyorder.train.Training`'s own (`one_step`: the same batches, training
nodes, optimiser, warm-up, clipping and cosine decay as `anyorder train`). What differs:
- the number of steps: at most `max_steps`, and no more than fit `max_time` seconds of a
  `clock` at the speed measured so far, planned again every PROBE_STEPS steps (the
  learning-rate schedule reads the plan at each step), so the cosine schedule ends when the
  budget does even when the speed changes;
- the clock: by default `thread_clock`, the CPU seconds of the thread that trains, not the
  wall clock. On a shared machine other processes take turns on the cores; a wall-clock
  budget then bought a third of the steps at load 8 that it bought on an idle core (and the
  fills lost up to 0.05 NRMSE), while CPU time only advances when the fit runs, so the
  budget buys about the same steps whatever else runs (the wall time stretches instead).
  With several torch threads the calling thread takes part in every parallel region, so
  its CPU time is still about the wall time an idle machine would take. A GPU fit waits on
  the device, which CPU time does not see: there the wall clock is the budget;
- held-out scores: every `eval_every` steps the training objective (the masked conditional
  NLL of the imputation queries) is scored on held-out rows with fixed queries; the weights
  of the best score are kept beside the last ones, and training stops after `patience`
  scores without improvement (None: never), or when the budget is spent (should the
  machine slow down after the timed steps).

Measured on MAGIC (docs/imputation.md): the held-out NLL bottoms out long before the
squared error of the conditional means does, so the best-scoring weights give calibrated
draws and intervals while the last weights give the better point fills.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .config import Config
from .data import Dataset
from .train import Training, resolve_device

PROBE_STEPS = 20        # steps between plans of the schedule's length
CLOCKS = ("cpu", "wall")


def thread_clock() -> float:
    """CPU seconds of the calling thread (see the module): blind to time spent waiting for a
    core, so a budget in these seconds buys the same steps on an idle and a busy machine."""
    return time.thread_time()


def budget_clock(kind: str, device) -> Callable[[], float]:
    """The clock of a training budget: "cpu" (the thread's CPU seconds; the wall clock on a
    GPU, whose work the CPU clock does not see) or "wall"."""
    if kind not in CLOCKS:
        raise ValueError(f"budget clock must be one of {', '.join(CLOCKS)}, got {kind!r}")
    return thread_clock if kind == "cpu" and resolve_device(str(device)).type == "cpu" else time.perf_counter


@dataclass
class Trained:
    """What `train_in_memory` returns: the model (eval mode, last weights), the weights of the
    best held-out score (None without held-out rows), the steps taken and planned, the best
    held-out loss (None without held-out rows), the wall seconds spent, and the seconds of
    the budget's clock spent."""

    model: torch.nn.Module
    best_state: dict | None
    steps: int
    planned: int
    best_loss: float | None
    seconds: float
    clock_seconds: float


def planned_steps(step: int, seconds: float, budget: float, ceiling: int) -> int:
    """The schedule's length after `step` steps took `seconds` (held-out scoring included) of
    a `budget` for all steps: as many as fit at the speed so far, at most `ceiling`, at least
    one more. Planned again every PROBE_STEPS steps, so a machine whose load changes still
    ends its cosine decay when the budget ends, neither early nor cut off."""
    return max(step + 1, min(ceiling, int(budget * step / seconds)))


def held_out_loss(model, rows: torch.Tensor, drawn: torch.Tensor, device) -> float:
    """The training objective on held-out rows with fixed training nodes `drawn`."""
    model.eval()
    with torch.no_grad():
        loss = model.loss(rows.to(device), drawn.to(device)).item()
    model.train()
    return loss


def train_in_memory(config: Config, data: Dataset, max_time: float | None, patience: int | None = None,
                    eval_every: int | None = None, progress: bool = False,
                    clock: Callable[[], float] = thread_clock) -> Trained:
    """Train the model `config` describes on `data` (its "valid" split, where present, scores
    the stopping rule) for at most `config.train.steps` steps and about `max_time` seconds
    of `clock` (None: no time limit); see the module."""
    wall = time.perf_counter()
    started = clock()
    run = Training(config, data)
    t = config.train
    probe = clock()
    valid = data.splits.get("valid")
    drawn = None
    if valid is not None and len(valid):
        drawn = run.model.draw_training(len(valid), generator=torch.Generator().manual_seed(t.seed + 1))
    ceiling, every = t.steps, eval_every or max(25, t.steps // 40)
    best, best_state, since = None, None, 0
    bar = tqdm(total=t.steps, disable=not progress, desc="fit", dynamic_ncols=True)
    run.model.train()
    while run.step < t.steps:
        run.one_step()
        bar.update(1)
        if max_time is not None and run.step % PROBE_STEPS == 0:
            t.steps = planned_steps(run.step, max(clock() - probe, 1e-9), max_time - (probe - started), ceiling)
            if run.step == PROBE_STEPS and eval_every is None:
                every = max(25, t.steps // 40)
            bar.total = t.steps
        if drawn is not None and (run.step % every == 0 or run.step == t.steps):
            loss = held_out_loss(run.model, valid, drawn, run.device)
            if not torch.isfinite(torch.tensor(loss)):
                break
            if best is None or loss < best:
                best, best_state, since = loss, copy.deepcopy(run.model.state_dict()), 0
            else:
                since += 1
            bar.set_postfix(valid_loss=f"{loss:.4f}", best=f"{best:.4f}")
            if patience is not None and since >= patience:
                break
        if max_time is not None and clock() - started > max_time:
            break       # the steps slowed down after the last plan: the budget holds
    bar.close()
    return Trained(run.model.eval(), best_state, run.step, t.steps, best, time.perf_counter() - wall,
                   clock() - started)
