"""Name -> constructor lookup with keyword checking, so a config typo is a clear error."""

from __future__ import annotations

import importlib
import inspect

from .config import ConfigError


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
    clash = sorted(set(options) & set(given))
    if clash:
        raise ConfigError(f"{section} keys {clash} are fixed by the data and cannot be set")
    return factory(**options, **{k: v for k, v in given.items() if k in params})
