"""One training loop for every data type: AdamW or Muon, warm-up, clipping, EMA, bf16, DDP, resume.

Data-parallel runs are started by `torchrun`; every process draws the same global batch
and the same training nodes or paths from one seeded generator and keeps its own slice, so
a run on N processes follows the single-process run with the same global batch, and a
resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import csv
import fcntl
import gc
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from . import checkpoint, files, memory
from .build import build_model, describe
from .config import Config, ConfigError, apply_overrides, load_config
from .data import Dataset, complete_rows, data_io, load_data
from .errors import Notice, UserError
from .model import AnyOrderModel
from .optim import KINDS as OPTIMIZERS, optimizer_for
from .precision import autocast_for
from .signals import StopRequests

CONFIG = "config.yaml"
CHECKPOINT_FILES = (checkpoint.WEIGHTS, checkpoint.STATE)
LOG_FILES = ("metrics.csv", "tensorboard")
OLD_VALID = "valid_bpd"   # metrics.csv's validation column for every kind of data before tables had their own


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


def validation_loglik(model: AnyOrderModel, rows: torch.Tensor, device, autocast, seed: int) -> float:
    """A cheap, fixed-seed one-step estimate of the mean joint log-likelihood of validation
    rows, nats per row (`DataIO.valid_value` turns it into the figure a kind reports)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    with torch.no_grad(), autocast, model.query_options(**model.validation_options()):
        logp = model.log_prob(rows.to(device), estimator="one-step", num_draws=4, generator=gen)
    model.train()
    return logp.double().mean().item()


def training_batch(data: Dataset, model: AnyOrderModel, batch_size: int, generator: torch.Generator):
    """The global batch x `[B, D]` and what the model trains on for it (nodes or paths:
    `model.draw_training`), on the CPU. Every data-parallel process draws the same from the
    same generator and keeps its own slice."""
    x = data.train_batch(batch_size, generator)
    return x, model.draw_training(batch_size, generator=generator)


def train_step(objective: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, node: torch.Tensor,
               lr: float, clip: float, autocast, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch: the loss under `autocast`, backward, gradient clipping
    (clip 0: none), the update. Returns the detached loss and the gradient norm (scalars)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        loss = objective(x, node, generator)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(objective.parameters(), clip if clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach(), grad_norm


def _positive(name: str, value, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def check_config(config: Config, world: int = 1) -> None:
    """Every train and optim option, checked before anything is built or written."""
    t, o = config.train, config.optim
    for name in ("steps", "batch_size", "log_every", "eval_every", "ckpt_every", "eval_rows"):
        _positive(f"train.{name}", getattr(t, name))
    _positive("optim.warmup", o.warmup, low=0)
    if not 0 <= t.seed < 2 ** 63:
        raise ConfigError(f"train.seed must lie in 0..2**63-1, got {t.seed}")
    if t.batch_size % world:
        raise ConfigError(f"train.batch_size {t.batch_size} must divide evenly over {world} processes")
    if not str(t.out).strip():
        raise ConfigError("train.out is empty; name the run directory, e.g. train.out=runs/mine")
    if o.decay not in ("none", "cosine"):
        raise ConfigError(f"optim.decay must be 'none' or 'cosine', got {o.decay!r}")
    if o.kind not in OPTIMIZERS:
        raise ConfigError(f"optim.kind must be one of {', '.join(OPTIMIZERS)}, got {o.kind!r}")
    if o.kind == "muon" and getattr(torch.optim, "Muon", None) is None:
        raise ConfigError(f"optim.kind muon needs torch.optim.Muon (torch >= 2.9); this is torch {torch.__version__}")
    numbers = [("optim.lr", o.lr, 0 < o.lr <= 1, "a number in (0, 1]"),
               ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, "a finite number >= 0"),
               ("optim.clip", o.clip, o.clip >= 0, "a finite number >= 0 (0 turns clipping off)"),
               ("optim.ema", o.ema, 0 <= o.ema < 1, "in [0, 1) (0 turns the EMA off)")]
    for name, value, inside, what in numbers:
        if not (math.isfinite(value) and inside):
            raise ConfigError(f"{name} must be {what}, got {value!r}")
    betas = o.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                  for b in betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(betas)!r}")


class TrainingDiverged(UserError):
    """The loss, the gradients or the weights stopped being finite numbers."""


class MetricsLog:
    """metrics.csv (kept across resumes, cut back to the resumed step) and TensorBoard if installed.

    `valid` names the validation column (`DataIO.valid_metric`); a resumed run whose file
    still has the old `valid_bpd` column of a kind that now logs another figure gets its
    values converted by `from_old` (bits per dimension -> the new figure)."""

    def __init__(self, run_dir: Path, start: int, enabled: bool, valid: str = OLD_VALID,
                 from_old=lambda bpd: bpd):
        self.path, self.enabled, self.board = run_dir / "metrics.csv", enabled, None
        self.columns = ["step", "train_loss", "lr", "grad_norm", "tokens_per_s", valid, "elapsed_s"]
        if not enabled:
            return
        kept = []
        if start and self.path.exists():
            with self.path.open() as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start]
        for row in kept:
            if valid != OLD_VALID and OLD_VALID in row:
                old = row.pop(OLD_VALID)
                row[valid] = from_old(float(old)) if old else ""
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
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
            csv.DictWriter(f, self.columns).writerow(row)
        if self.board is not None:
            for key, value in row.items():
                if key != "step" and value != "":
                    self.board.add_scalar(key, value, row["step"])


class RunDirectory:
    """Exclusive use of a run directory while training (a context manager yielding its Path).

    Refuses a path that is a file, a directory that already holds a checkpoint unless
    resuming it, and one holding files that are not a run's; a run that never wrote a
    checkpoint is started again. Takes an exclusive lock (flock on the directory itself),
    so a second training into the same directory stops at once instead of interleaving
    with the first; removes the temporary files of writes a killed run left behind
    (`files.remove_stale`). Only the owning process (rank 0)
    touches the directory; `agree` (see `Training.agree`) lets every process learn whether
    the claim failed.
    """

    def __init__(self, path: str | Path, resume: bool, owner: bool = True, agree=lambda action: action()):
        self.path, self.resume, self.owner, self.agree, self.fd = Path(path), resume, owner, agree, None

    def __enter__(self) -> Path:
        return self.agree(self._claim)

    def _claim(self) -> Path:
        if not self.owner:
            return self.path
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"train.out {self.path} is a file, not a run directory")
        if self.resume and not self.path.is_dir():
            raise checkpoint.CheckpointError(f"cannot resume: there is no run directory {self.path}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as err:
            raise UserError(f"cannot create the run directory {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.__exit__()
            raise UserError(f"another training is using {self.path} right now; wait for it or choose "
                            "another train.out") from None
        try:
            self._check_contents()
        except UserError:
            self.__exit__()
            raise
        files.remove_stale(self.path)
        return self.path

    def _check_contents(self) -> None:
        """Refuse a directory holding a checkpoint (unless resuming) or files that are not a
        run's; a run that never wrote a checkpoint (stopped or failed before its first) is
        started again: its config, metrics and TensorBoard events are replaced."""
        held = sorted(name for name in CHECKPOINT_FILES if (self.path / name).exists())
        if held and not self.resume:
            raise UserError(f"{self.path} already holds a run ({', '.join(held)}); continue it with "
                            f"--resume {self.path} or choose another train.out")
        logs = sorted(name for name in (CONFIG, *LOG_FILES) if (self.path / name).exists())
        if logs and not held and not self.resume:
            if not is_run_config(self.path / CONFIG):
                raise UserError(f"{self.path} already holds {', '.join(logs)} but no anyorder run; "
                                "choose another train.out")
            shutil.rmtree(self.path / "tensorboard", ignore_errors=True)
        if not os.access(self.path, os.W_OK):
            raise UserError(f"the run directory {self.path} is not writable")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)      # releases the lock
            self.fd = None


def is_run_config(path: Path) -> bool:
    """Whether `path` is the config.yaml of an anyorder run (what `Training.start` writes)."""
    try:
        load_config(str(path))
    except UserError:
        return False
    return True


def _processes(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; joins the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(device_name)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


class Training:
    """The parts of one run, built and checked without touching any file: data, model,
    optimiser, EMA, generators. `start` claims the run directory, `fit` runs the loop."""

    def __init__(self, config: Config, data: Dataset | None = None):
        self.config, t, o = config, config.train, config.optim
        self.rank, self.world, self.device = _processes(t.device)
        check_config(config, self.world)
        torch.manual_seed(t.seed)
        self.data = data or load_data(config.data)
        self.meta = describe(self.data)
        self.io = data_io(self.data.kind)
        self.model = build_model(config, self.meta).to(self.device)
        self._check_batch_fits()
        self.optimizer = optimizer_for(self.model, o)
        self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()} if o.ema else None
        self.gen = torch.Generator().manual_seed(t.seed)           # batches and training nodes
        self.loss_gen = torch.Generator(device=self.device)         # reseeded per step and process
        self.autocast = autocast_for(t.precision, self.device)
        valid = complete_rows(self.data.split("valid"))[: t.eval_rows] if "valid" in self.data.splits else []
        self.valid = valid if len(valid) else None       # validation likelihoods need complete rows
        self.step, self.saved = 0, 0
        self.objective: nn.Module = Objective(self.model)

    def _check_batch_fits(self) -> None:
        """Refuse a batch that cannot fit before anything is allocated for it: one process
        holds at least its rows (8 bytes a value) and the head's float32 parameters for
        every variable of them."""
        t, dim = self.config.train, self.data.dim
        rows = t.batch_size // self.world
        what = f"train.batch_size {t.batch_size}" + (f" ({rows} per process)" if self.world > 1 else "")
        memory.check_fits(rows * dim * (4 * self.model.head.params_per_variable + 8), what, self.device)
        if self.device.type != "cpu":
            memory.check_fits(t.batch_size * dim * 8, what, "cpu")      # batches are drawn on the CPU

    def agree(self, action):
        """`action()` on every process; under DDP all learn whether any raised a UserError,
        so that no process waits forever for one that stopped."""
        error = None
        try:
            result = action()
        except UserError as err:
            error, result = err, None
        if self.world > 1:
            failed = torch.tensor([float(error is not None)], device=self.device)
            dist.all_reduce(failed)
            if failed.item() and error is None:
                raise UserError("another process of this run stopped with an error (it printed it)")
        if error is not None:
            raise error
        return result

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly, incl. every random state."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "ema": self.ema,
                "generator": self.gen.get_state(), "rng": rng}

    def restore(self, state: dict, run_dir: Path) -> None:
        """Load a `train_state.pt`; a model that does not fit names the config keys that changed."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            changed = _changed_keys(state["config"], self.config.to_dict())
            raise checkpoint.CheckpointError(
                f"cannot resume {run_dir}: its model does not fit this config "
                f"({'changed: ' + ', '.join(changed) if changed else str(err).splitlines()[0]})") from None
        if self.ema is not None:
            saved = state["ema"] or {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.ema = {k: v.to(self.device) for k, v in saved.items()}
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step = self.saved = state["step"]

    def _last_checkpoint(self) -> str:
        return f"the checkpoint of step {self.saved} is kept" if self.saved else "no checkpoint was written yet"

    def save(self, run_dir: Path) -> None:
        """Checkpoint the current step (rank 0 writes; finite weights only)."""
        def write():
            bad = [k for k, v in {**self.model.state_dict(), **{f"ema.{k}": v for k, v in (self.ema or {}).items()}}.items()
                   if v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:
                raise TrainingDiverged(f"the weights are not finite after step {self.step} ({bad[0]} and "
                                       f"{len(bad) - 1} more); nothing was saved, {self._last_checkpoint()}; "
                                       "lower optim.lr or tighten optim.clip")
            if self.rank == 0:
                weights = self.ema if self.ema is not None else self.model.state_dict()
                try:
                    checkpoint.save(run_dir, weights, self.config, self.meta, self.step, self.state())
                except OSError as err:
                    raise checkpoint.CheckpointError(
                        f"cannot write the step-{self.step} checkpoint in {run_dir}: {err.strerror}; "
                        f"{self._last_checkpoint()}: make room, then continue with --resume {run_dir}") from None
        self.agree(write)
        self.saved = self.step

    def start(self, run_dir: Path, resume: bool) -> None:
        """Restore the state of a resumed run that has one, or record the config of a new run
        (or of one that never wrote a checkpoint: it starts again from step 0). The config is
        written before any step, so an unwritable directory or a full disk stops the run
        before it has done any work, and so is a disk without room for a checkpoint."""
        if resume and (run_dir / checkpoint.STATE).exists():
            self.agree(lambda: self.restore(checkpoint.read_state(run_dir), run_dir))
        self.agree(lambda: self._prepare(run_dir))
        if self.world > 1:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=device_ids)

    def _prepare(self, run_dir: Path) -> None:
        if self.rank != 0:
            return
        text = yaml.safe_dump(self.config.to_dict(), sort_keys=False).encode()
        try:
            if not self.saved:
                files.write_atomic(run_dir / CONFIG, lambda f: f.write(text))
            free = shutil.disk_usage(run_dir).free
        except OSError as err:
            raise UserError(f"cannot write in the run directory {run_dir}: {err.strerror}") from None
        needed = self.checkpoint_bytes()
        if free < needed:
            raise UserError(f"the run directory {run_dir} has {free / 2**20:.1f} MiB free; a checkpoint of "
                            f"this model needs about {needed / 2**20:.1f} MiB: make room or choose another "
                            "train.out")

    def checkpoint_bytes(self) -> int:
        """About the bytes a checkpoint takes: float32 weights, then the state's weights,
        two optimiser moments per weight and the EMA (both written at once)."""
        weights = sum(v.numel() * 4 for v in self.model.state_dict().values())
        return weights * (1 + 1 + 2 + (1 if self.ema is not None else 0))

    # ---------------------------------------------------------------- loop
    def _local(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch, on its device."""
        size = self.config.train.batch_size // self.world
        return tensor[self.rank * size:(self.rank + 1) * size].to(self.device)

    def one_step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Draw the global batch, take one optimiser step on this process's slice, update the EMA."""
        t, o = self.config.train, self.config.optim
        x, node = training_batch(self.data, self.model, t.batch_size, self.gen)
        lr = o.lr * lr_factor(self.step, o.warmup, o.decay, t.steps)
        self.model.begin_step(self.step)
        # ACE's proposal draws differ in number per process: their generator depends on
        # (seed, step, rank) only, so no state is shared between processes or needs saving.
        self.loss_gen.manual_seed(hash((t.seed, self.step, self.rank)) & (2 ** 63 - 1))
        loss, grad_norm = train_step(self.objective, self.optimizer, self._local(x), self._local(node),
                                     lr, o.clip, self.autocast, self.loss_gen)
        if self.ema is not None:
            with torch.no_grad():
                for key, value in self.model.state_dict().items():
                    self.ema[key].lerp_(value, 1 - o.ema) if value.is_floating_point() else self.ema[key].copy_(value)
        self.step += 1
        return loss, grad_norm, lr

    def _check_finite(self, window: list) -> None:
        """Stop, naming the step, at the first non-finite loss or gradient norm of the window."""
        losses = torch.stack([loss for loss, _ in window]).float()
        norms = torch.stack([norm for _, norm in window]).float()
        bad = ~(torch.isfinite(losses) & torch.isfinite(norms))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise TrainingDiverged(
                f"training diverged at step {self.step - len(window) + i + 1}: loss {losses[i].item()}, "
                f"gradient norm {norms[i].item()}; {self._last_checkpoint()}; lower optim.lr or tighten "
                "optim.clip")

    def _log(self, window: list, lr: float, seconds: float, elapsed: float) -> dict:
        t = self.config.train
        mean_loss = torch.stack([loss for loss, _ in window]).float().mean()
        if self.world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= self.world
        valid = self.io.valid_metric
        row = {"step": self.step, "train_loss": mean_loss.item(), "lr": lr, "grad_norm": window[-1][1].item(),
               "tokens_per_s": len(window) * t.batch_size * self.data.dim / seconds, valid: "",
               "elapsed_s": elapsed}
        if self.valid is not None and (self.step % t.eval_every == 0 or self.step == t.steps):
            loglik = validation_loglik(self.model, self.valid, self.device, self.autocast, t.seed)
            row[valid] = self.io.valid_value(loglik, self.data.dim)
        return row

    def fit(self, run_dir: Path, progress: bool = True) -> None:
        """Train to `train.steps`, logging every `log_every` and checkpointing every
        `ckpt_every`; a SIGINT or SIGTERM checkpoints the step it arrived in, then stops
        (`StopRequests`), so a stopped run resumes where it stopped."""
        t = self.config.train
        valid, dim = self.io.valid_metric, self.data.dim
        log = MetricsLog(run_dir, self.step, self.rank == 0, valid,
                         lambda bpd: self.io.valid_value(-bpd * dim * math.log(2), dim))
        bar = tqdm(total=t.steps, initial=self.step, disable=not progress or self.rank != 0, desc="train",
                   dynamic_ncols=True)
        started = window_start = time.perf_counter()
        window = []
        self.model.train()
        with StopRequests() as stop:
            while self.step < t.steps:
                try:
                    loss, grad_norm, lr = self.one_step()
                except RuntimeError as err:
                    if not memory.is_out_of_memory(err):
                        raise
                    raise UserError(f"train.batch_size {t.batch_size} does not fit in memory at step "
                                    f"{self.step + 1} ({str(err).splitlines()[0][:160]}); lower it; "
                                    f"{self._last_checkpoint()}") from None
                window.append((loss, grad_norm))
                bar.update(1)
                last = self.step == t.steps
                if self.step % t.log_every == 0 or last:
                    self._check_finite(window)
                    now = time.perf_counter()
                    row = self._log(window, lr, now - window_start, now - started)
                    log.write(row)
                    bar.set_postfix(loss=f"{row['train_loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}",
                                    **({valid: f"{row[valid]:.4f}"} if row[valid] != "" else {}))
                    window = []
                stopping = self._all_agree(stop.requested)
                if self.step % t.ckpt_every == 0 or last or stopping:
                    if window:
                        self._check_finite(window)
                    self.save(run_dir)
                if stopping:
                    bar.close()
                    if self.rank == 0:
                        warnings.warn(Notice(f"stopped at step {self.step} of {t.steps}, checkpoint written; "
                                             f"continue with --resume {run_dir}"), stacklevel=2)
                    stop.deliver()
                    return
                if not window:  # evaluation and checkpoint time is not training throughput
                    window_start = time.perf_counter()
        bar.close()

    def _all_agree(self, flag: bool) -> bool:
        """`flag` of any process, on every process (a stop request reaches them at different steps)."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def _changed_keys(old: dict, new: dict) -> list[str]:
    """`section.key (old -> new)` for every config value that differs between two raw configs."""
    changed = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if section != "train" and a.get(key) != b.get(key):
                changed.append(f"{section}.{key} ({a.get(key)!r} -> {b.get(key)!r})")
    return changed


def train(config: Config, resume: bool = False, progress: bool = True, data: Dataset | None = None) -> Path:
    """Train the model a config describes; returns the run directory holding its checkpoint.

    Everything is built and checked first (config, data, model, objective), so a mistake
    stops the run before any file is written; then the run directory is claimed
    (`RunDirectory`), the state restored or the config recorded, and the loop runs.
    """
    run = Training(config, data)
    world = run.world
    try:
        with RunDirectory(config.train.out, resume, owner=run.rank == 0, agree=run.agree) as run_dir:
            run.start(run_dir, resume)
            run.fit(run_dir, progress)
        if world > 1:
            dist.barrier()                 # no process leaves while another still talks to it
    finally:
        if world > 1 and dist.is_initialized():
            del run                        # DDP's reducer, held in reference cycles, freed now: freed at the
            gc.collect()                   # interpreter's teardown, gloo's threads aborted the process there
            dist.destroy_process_group()   # else gloo's threads may abort the process at exit
    return run_dir


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The config a run was started with, with `section.key=value` overrides (e.g. more steps).

    A run that stopped or failed before its first checkpoint (its directory holds its
    config.yaml but no training state) is started again from step 0 with that config."""
    run_dir = Path(run_dir)
    if not (run_dir / checkpoint.STATE).exists() and is_run_config(run_dir / CONFIG):
        warnings.warn(Notice(f"{run_dir} holds no checkpoint yet (the run stopped before its first); "
                             "it starts again from step 0 with its config.yaml"), stacklevel=2)
        config = load_config(str(run_dir / CONFIG), overrides)
        config.train.out = str(run_dir)
        return config
    state = checkpoint.read_state(run_dir)
    config = Config.from_dict(apply_overrides(checkpoint.with_added_keys(state["config"]), overrides))
    config.train.out = str(run_dir)
    return config
