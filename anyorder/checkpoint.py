"""Checkpoints: weights in safetensors with the full config, plus a resumable training state.

A run directory holds `model.safetensors` (the weights to use — the EMA where there is
one — with the config and data description as metadata: enough to rebuild the model
without any data files) and `train_state.pt` (raw weights, optimiser, EMA, the data
generator and the global random states, step: enough to resume to the same state). Both
are written through `files.write_atomic`, so a run killed mid-write never leaves a torn
checkpoint and a full disk is reported as the OSError it is. Non-finite weights are refused when read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes

from .config import Config, ConfigError
from .errors import UserError
from .files import write_atomic

FORMAT = "anyorder-checkpoint-1"
# Config keys added after checkpoints were first written, with the value that runs saved
# before them had: an older checkpoint rebuilds the model it was trained as.
ADDED_KEYS = {("model", "energy_observed"): False, ("model", "energy_warmup"): 0}
WEIGHTS, STATE = "model.safetensors", "train_state.pt"
STATE_KEYS = {"model", "optimizer", "ema", "generator", "rng", "step", "config"}


class CheckpointError(UserError):
    """A missing, corrupt or foreign checkpoint (the CLI prints it on one line)."""


def save(run_dir: str | Path, weights: dict, config: Config, meta: dict, step: int,
         state: dict | None = None) -> None:
    """Write the weights that users load, then the resumable state (if given). The state is
    written last, so it is never ahead of the weights: if either write fails (a full disk),
    `--resume` restarts from the state and writes both again."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {run_dir}: it is a file, and a checkpoint is a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot save a checkpoint to {run_dir}: {err.strerror or err}") from err
    tensors = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.contiguous().cpu()
               for k, v in weights.items()}
    info = {"format": FORMAT, "config": json.dumps(config.to_dict()), "meta": json.dumps(meta), "step": str(step)}
    write_atomic(run_dir / WEIGHTS, lambda f: f.write(safetensors_bytes(tensors, metadata=info)))
    if state is not None:
        write_atomic(run_dir / STATE, lambda f: torch.save({**state, "step": step, "config": config.to_dict()}, f))


def _check_finite(tensors: dict, where: Path) -> None:
    bad = [k for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{where} holds non-finite weights ({bad[0]}"
                              f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the run it came "
                              "from diverged or the file is damaged")


def weights_path(path: str | Path) -> Path:
    path = Path(path)
    found = path / WEIGHTS if path.is_dir() else path
    if not found.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected a run directory with {WEIGHTS} or the file itself)")
    return found


def with_added_keys(raw: dict) -> dict:
    """A saved raw config with every key of `ADDED_KEYS` it lacks set to its old value."""
    for (section, key), old in ADDED_KEYS.items():
        if isinstance(raw.get(section), dict):
            raw[section].setdefault(key, old)
    return raw


def read(path: str | Path) -> tuple[dict, Config, dict, int]:
    """(weights, config, data meta, step) from a run directory or a .safetensors file."""
    found = weights_path(path)
    try:
        with safe_open(str(found), "pt") as f:
            info = f.metadata() or {}
        weights = load_file(str(found))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {found}: {str(err).splitlines()[0]}") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{found} is a safetensors file but not an anyorder checkpoint")
    try:
        config = Config.from_dict(with_added_keys(json.loads(info["config"])))
        meta, step = json.loads(info["meta"]), int(info["step"])
    except (KeyError, ValueError, ConfigError) as err:
        raise CheckpointError(f"checkpoint {found} has damaged metadata: {err}") from None
    _check_finite(weights, found)
    return weights, config, meta, step


def read_state(run_dir: str | Path) -> dict:
    """The resumable training state of a run directory."""
    found = Path(run_dir) / STATE
    if not found.is_file():
        raise CheckpointError(f"cannot resume: no {STATE} in {run_dir}")
    try:
        state = torch.load(found, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged pickles/zips
        raise CheckpointError(f"cannot read {found}: {str(err).splitlines()[0]}") from None
    missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else sorted(STATE_KEYS)
    if not missing and not (isinstance(state["model"], dict) and isinstance(state["ema"], (dict, type(None)))):
        missing = ["model weights"]
    if missing:
        raise CheckpointError(f"{found} is not a complete training state (missing {', '.join(missing)})")
    _check_finite({**state["model"], **{f"ema.{k}": v for k, v in (state["ema"] or {}).items()}}, found)
    return state
