"""Name -> constructor lookup with keyword checking, so a config typo is a clear error."""

from __future__ import annotations

import importlib
import inspect

from . import memory
from .config import ConfigError


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "tuple": (list, tuple),
          "list": (list, tuple)}


def _check_type(value, param: inspect.Parameter, name: str) -> None:
    """Refuse a value whose type the parameter's default or simple annotation rules out
    (`width: int = 256` takes no "abc", 2.5 or True); annotations it cannot read pass."""
    default = param.default
    if default is not inspect.Parameter.empty and default is not None:
        wanted = [type(default).__name__]
    else:
        wanted = [part.strip().split("[")[0] for part in str(param.annotation).split("|")]
        if value is None and "None" in wanted:
            return
    kinds = [_TYPES[w] for w in wanted if w in _TYPES]
    if not kinds or len(kinds) < len([w for w in wanted if w != "None"]):
        return
    if isinstance(value, bool) and "bool" not in wanted:
        ok = False
    else:
        ok = any(isinstance(value, kind) for kind in kinds)
    if not ok:
        raise ConfigError(f"{name} must be {' or '.join(w for w in wanted if w != 'None')}, got {value!r}")


def build(table: dict, spec: dict, section: str, **given):
    """Call `table[spec["kind"]]` with the spec's other keys and `given`, rejecting unknown keys."""
    kind = spec.get("kind")
    if kind not in table:
        raise ConfigError(f"unknown {section}.kind {kind!r}; expected one of {', '.join(table)}")
    module, name = table[kind]
    factory = getattr(importlib.import_module(module), name)
    options = {k: v for k, v in spec.items() if k != "kind"}
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p not in given and p != "self"]
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ConfigError(f"unknown key(s) {bad} for {section} kind {kind!r}; known keys: {accepted}")
    for key, value in options.items():
        _check_type(value, params[key], f"{section}.{key}")
    clash = sorted(set(options) & set(given))
    if clash:
        raise ConfigError(f"{section} keys {clash} are fixed by the data and cannot be set")
    try:
        return factory(**options, **{k: v for k, v in given.items() if k in params})
    except RuntimeError as err:
        if not memory.is_out_of_memory(err):
            raise
        raise ConfigError(f"{section} kind {kind!r} with {options} does not fit in memory: lower its sizes") from None
