"""Run configuration: plain dataclasses with defaults, presets as YAML files, dotted overrides.

`data` and `net` are open dictionaries whose keys are the keyword arguments of the chosen
loader and network (checked against their signatures when the run is built); the other
sections are fixed dataclasses, so a misspelt key is an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import plainyaml
from .errors import UserError


class ConfigError(UserError):
    """A user-facing problem with a configuration (the CLI prints it on one line)."""


@dataclass
class ModelConfig:
    kind: str = "aoarm"                 # "aoarm" (one network + head) or "ace" (proposal + energy)
    strategy: str = "mac"
    protocol: str = "natural"
    reweight: bool = True
    targets: str = "all"
    query: str = "card-uniform"
    path_mix: tuple = (1.0, 1.0, 1.0)   # path networks: weights of joint, marginal, conditional[, marginal pair] paths
    components: int = 10                # mixture components of the continuous head
    num_importance: int = 20            # ACE: importance samples in training
    eval_importance: int = 20000        # ACE: importance samples in queries (ACE's evaluation)
    energy_warmup: int = 5000           # ACE: steps before the energy term joins the loss
    energy_observed: bool = True        # ACE: the energy network also sees x_o and the mask


@dataclass
class OptimConfig:
    kind: str = "adamw"                 # "adamw", or "muon": Muon on the hidden matrices, AdamW on the rest
    lr: float = 5e-4
    warmup: int = 100                   # linear warm-up steps
    decay: str = "none"                 # "none" or "cosine" (to zero at the last step)
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    clip: float = 0.25                  # gradient-norm clipping; 0 turns it off
    ema: float = 0.0                    # weight EMA decay, e.g. 0.9995; 0 turns it off


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64                # global, split over data-parallel processes
    seed: int = 0
    device: str = "auto"                # "auto", "cpu", "cuda", "cuda:1", …
    precision: str = "auto"             # "auto" (bf16 where the hardware has native bf16), "bf16", "fp32"
    log_every: int = 10
    eval_every: int = 250
    eval_rows: int = 256                # validation rows for the one-step estimate during training
    ckpt_every: int = 250
    out: str = "runs/run"


@dataclass
class Config:
    data: dict = field(default_factory=lambda: {"kind": "text"})
    net: dict = field(default_factory=lambda: {"kind": "transformer"})
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, raw: dict) -> "Config":
        if not isinstance(raw, dict):
            raise ConfigError(f"a configuration must be a mapping of sections, got {type(raw).__name__}")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; "
                              f"expected {[f.name for f in dataclasses.fields(cls)]}")
        sections = {}
        for f in dataclasses.fields(cls):
            value = raw.get(f.name, {})
            if not isinstance(value, dict):
                raise ConfigError(f"config section {f.name!r} must be a mapping, got {value!r}")
            if f.name in ("data", "net"):
                if "kind" not in value:
                    raise ConfigError(f"config section {f.name!r} needs a 'kind'")
                sections[f.name] = dict(value)
                continue
            section_type = f.default_factory
            names = {g.name: g for g in dataclasses.fields(section_type)}
            bad = set(value) - set(names)
            if bad:
                raise ConfigError(f"unknown key(s) {sorted(bad)} in section {f.name!r}; "
                                  f"known keys: {sorted(names)}")
            sections[f.name] = section_type(**{k: _coerce(v, names[k], f.name) for k, v in value.items()})
        return cls(**sections)


KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "text", tuple: "a list"}


def _coerce(value, f: dataclasses.Field, section: str):
    """Check a value against a field's default type (YAML gives ints where floats are meant)."""
    default = f.default if f.default is not dataclasses.MISSING else None
    want = type(default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, float) and isinstance(value, str) and _is_float(value):
        return float(value)             # YAML 1.1 reads 1e-3 (no dot) as a string
    elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    elif isinstance(value, want) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{section}.{f.name} must be {KIND_WORDS.get(want, 'a value')} ({want.__name__}), got {value!r}")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("anyorder.presets").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict:
    raw = plainyaml.load(text, where, ConfigError) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must hold a mapping of config sections")
    return raw


def _config_text(path: Path) -> str:
    """The text of a config file, refused before reading when it is not a file or too long."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"config file {path} {what}")
    try:
        if path.stat().st_size > plainyaml.MAX_BYTES:
            raise ConfigError(f"config file {path} is {path.stat().st_size} bytes; a config is at most "
                              f"{plainyaml.MAX_BYTES}")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None


def load_config(name_or_path: str, overrides: list[str] = ()) -> Config:
    """A preset name (see `preset_names`) or a YAML file, then `section.key=value` overrides."""
    path = Path(name_or_path)
    presets = preset_names()
    # A file is read as a config; a folder only when no preset has its name (a run folder
    # named after its preset, e.g. train.out=text-cpu, must not hide the preset).
    if path.suffix in (".yaml", ".yml") or path.is_file() or (path.exists() and name_or_path not in presets):
        raw = _read_yaml(_config_text(path), str(path))
    elif name_or_path in presets:
        text = resources.files("anyorder.presets").joinpath(f"{name_or_path}.yaml").read_text()
        raw = _read_yaml(text, f"preset {name_or_path}")
    else:
        raise ConfigError(f"no preset or file named {name_or_path!r}; presets: {', '.join(presets)}")
    return Config.from_dict(apply_overrides(raw, overrides))


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[:width] + "…")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set `section.key=value` items (values parsed as YAML) in a raw config mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.steps=500)")
        section = raw.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise ConfigError(f"cannot override {key}: section {parts[0]!r} is not a mapping")
        section[parts[1]] = plainyaml.load(value, f"override {_clip(item)}", ConfigError) if value.strip() else ""
    return raw
