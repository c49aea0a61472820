"""One training loop for every data type: AdamW, warm-up, clipping, EMA, bf16, DDP, resume.

Data-parallel runs are started by `torchrun`; every process draws the same global batch
and the same training nodes or paths from one seeded generator and keeps its own slice, so
a run on N processes follows the single-process run with the same global batch, and a
resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import csv
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from . import checkpoint
from .build import build_model, describe
from .config import Config, ConfigError, apply_overrides
from .data import Dataset, load_data
from .model import AnyOrderModel, bits_per_dim

METRICS = ["step", "train_loss", "lr", "grad_norm", "tokens_per_s", "valid_bpd", "elapsed_s"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device {name!r} is not a device name (try 'cpu', 'cuda' or 'auto')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA device is available")
    return device


def autocast_for(precision: str, device: torch.device):
    """bf16 autocast where asked for, or where 'auto' finds a GPU that has bf16."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"train.precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    use = precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else nullcontext()


def lr_factor(step: int, warmup: int, decay: str, steps: int) -> float:
    """Linear warm-up to 1, then constant or a cosine down to 0 at the last step."""
    factor = min(1.0, (step + 1) / max(1, warmup))
    if decay == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(1, steps)))
    elif decay != "none":
        raise ConfigError(f"optim.decay must be 'none' or 'cosine', got {decay!r}")
    return factor


class Objective(nn.Module):
    """The training loss as a forward pass, which is what DistributedDataParallel wraps."""

    def __init__(self, model: AnyOrderModel):
        super().__init__()
        self.model = model

    def forward(self, x, drawn, generator=None):
        return self.model.loss(x, drawn, generator=generator)


def validation_bpd(model: AnyOrderModel, rows: torch.Tensor, device, autocast, seed: int) -> float:
    """A cheap, fixed-seed one-step estimate of joint bits per dimension on validation rows."""
    gen = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    with torch.no_grad(), autocast:
        logp = model.log_prob(rows.to(device), estimator="one-step", num_draws=4, generator=gen)
    model.train()
    return bits_per_dim(logp, rows.shape[1]).mean().item()


def _check(config: Config, world: int) -> None:
    t, o = config.train, config.optim
    for name, value in (("train.steps", t.steps), ("train.batch_size", t.batch_size),
                        ("train.log_every", t.log_every), ("train.eval_every", t.eval_every),
                        ("train.ckpt_every", t.ckpt_every)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if t.batch_size % world:
        raise ConfigError(f"train.batch_size {t.batch_size} must divide evenly over {world} processes")
    if not (o.lr > 0 and 0 <= o.ema < 1 and o.clip >= 0 and o.warmup >= 0):
        raise ConfigError("need optim.lr > 0, 0 <= optim.ema < 1, optim.clip >= 0, optim.warmup >= 0")


class MetricsLog:
    """metrics.csv (kept across resumes, cut back to the resumed step) and TensorBoard if installed."""

    def __init__(self, run_dir: Path, start: int, enabled: bool):
        self.path, self.enabled, self.board = run_dir / "metrics.csv", enabled, None
        if not enabled:
            return
        kept = []
        if start and self.path.exists():
            with self.path.open() as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, METRICS)
            writer.writeheader()
            writer.writerows(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.board = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            pass

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, METRICS).writerow(row)
        if self.board is not None:
            for key, value in row.items():
                if key != "step" and value != "":
                    self.board.add_scalar(key, value, row["step"])


def train(config: Config, resume: bool = False, progress: bool = True, data: Dataset | None = None) -> Path:
    """Train the model a config describes; returns the run directory holding its checkpoint."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    _check(config, world)
    t, o = config.train, config.optim
    device = resolve_device(t.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    run_dir = Path(t.out)
    torch.manual_seed(t.seed)
    data = data or load_data(config.data)
    meta = describe(data)
    model = build_model(config, meta).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if o.ema else None
    gen = torch.Generator().manual_seed(t.seed)
    step = 0
    if resume:
        state = checkpoint.read_state(run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema = state["ema"] if ema is not None else None
        gen.set_state(state["generator"])
        step = state["step"]
    elif rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    objective = Objective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=[device] if device.type == "cuda" else None)
    autocast = autocast_for(t.precision, device)
    log = MetricsLog(run_dir, step, enabled=rank == 0)
    valid = data.split("valid")[: t.eval_rows]
    local = t.batch_size // world
    loss_gen = gen if device.type == "cpu" else None
    bar = tqdm(total=t.steps, initial=step, disable=not progress or rank != 0, desc="train", dynamic_ncols=True)
    started, window, window_loss = time.perf_counter(), time.perf_counter(), []

    def save():
        if rank == 0:
            weights = ema if ema is not None else model.state_dict()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema,
                     "generator": gen.get_state()}
            checkpoint.save(run_dir, weights, config, meta, step, state)
        if world > 1:
            dist.barrier()

    model.train()
    while step < t.steps:
        x = data.train_batch(t.batch_size, gen)
        drawn = model.draw_training(t.batch_size, generator=gen)   # nodes or paths, one global draw
        x, drawn = x[rank * local:(rank + 1) * local].to(device), drawn[rank * local:(rank + 1) * local].to(device)
        lr = o.lr * lr_factor(step, o.warmup, o.decay, t.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            loss = objective(x, drawn, loss_gen)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), o.clip if o.clip > 0 else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            with torch.no_grad():
                for key, value in model.state_dict().items():
                    ema[key].lerp_(value, 1 - o.ema) if value.is_floating_point() else ema[key].copy_(value)
        step += 1
        window_loss.append(loss.detach())
        bar.update(1)
        if step % t.log_every == 0 or step == t.steps:
            mean_loss = torch.stack(window_loss).mean()
            if world > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world
            now = time.perf_counter()
            row = {"step": step, "train_loss": mean_loss.item(), "lr": lr, "grad_norm": grad_norm.item(),
                   "tokens_per_s": len(window_loss) * t.batch_size * data.dim / (now - window),
                   "valid_bpd": "", "elapsed_s": now - started}
            if step % t.eval_every == 0 or step == t.steps:
                row["valid_bpd"] = validation_bpd(model, valid, device, autocast, t.seed)
            log.write(row)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}",
                            **({"valid_bpd": f"{row['valid_bpd']:.3f}"} if row["valid_bpd"] != "" else {}))
            window_loss = []
        if step % t.ckpt_every == 0 or step == t.steps:
            save()
        if not window_loss:  # evaluation and checkpoint time is not training throughput
            window = time.perf_counter()
    bar.close()
    return run_dir


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The config a run was started with, with `section.key=value` overrides (e.g. more steps)."""
    state = checkpoint.read_state(run_dir)
    config = Config.from_dict(apply_overrides(state["config"], overrides))
    config.train.out = str(run_dir)
    return config
