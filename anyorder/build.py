"""Assemble a model from a config and a data description, fresh or from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint
from .config import Config, ConfigError
from .data import Dataset
from .errors import UserError
from .heads import CategoricalHead, MixtureOfGaussiansHead, TableHead
from .model import AnyOrderModel
from .nets import build_net


def describe(data: Dataset) -> dict:
    """What a checkpoint must remember about its data: shape, type and how to decode."""
    return {"kind": data.kind, "dim": data.dim, "num_classes": data.num_classes, **data.meta}


def _aoarm(config: Config, given: dict, head, objective: dict) -> AnyOrderModel:
    return AnyOrderModel(build_net(config.net, **given), head, path_mix=config.model.path_mix, **objective)


def _ace(config: Config, given: dict, head, objective: dict) -> AnyOrderModel:
    from .ace import ACEModel
    m = config.model
    return ACEModel.from_config(config.net, given, head, num_importance=m.num_importance,
                                eval_importance=m.eval_importance, energy_warmup=m.energy_warmup,
                                energy_observed=m.energy_observed, **objective)


TABLE_NETS = ("resmlp", "path-transformer")     # networks that embed each column by its own kind
MODEL_KINDS = {"aoarm": _aoarm, "ace": _ace}     # model.kind -> builder(config, given, head, objective)


def build_model(config: Config, meta: dict) -> AnyOrderModel:
    """The model a config describes, for data described by `meta` (see `describe`)."""
    missing = [key for key in ("kind", "dim", "num_classes") if key not in meta]
    if missing:
        raise UserError(f"meta lacks {', '.join(missing)}: pass describe(dataset) (anyorder.build) or the meta "
                        "that load_model returns, not the dataset's own .meta")
    m = config.model
    if m.kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model.kind {m.kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    num_classes = meta["num_classes"]
    # A table with categorical columns (meta "levels", absent from older checkpoints) takes
    # a TableHead, and its network one-hot inputs; every other table stays all-Gaussian.
    found_levels = meta.get("levels") if meta["kind"] == "table" else None     # images: an intensity count
    levels = [None if found is None else len(found) for found in found_levels or []]
    mixed = any(k is not None for k in levels)
    if mixed and m.kind != "aoarm":
        named = [c for c, k in zip(meta.get("columns", []), levels) if k is not None]
        raise ConfigError(f"model.kind {m.kind!r} models continuous columns only; this table has categorical "
                          f"columns {named}: use model.kind aoarm, or data.numeric / data.drop")
    if mixed and config.net.get("kind") not in TABLE_NETS:
        raise ConfigError(f"a table with categorical columns needs net.kind {' or '.join(TABLE_NETS)}, "
                          f"got {config.net.get('kind')!r}")
    if mixed:
        head = TableHead(levels, m.components)
    else:
        head = CategoricalHead(num_classes) if num_classes else MixtureOfGaussiansHead(m.components)
    given = {"dim": meta["dim"], "num_classes": num_classes, "out_features": head.params_per_variable}
    if mixed:
        given["levels"] = levels
    if "shape" in meta:
        given["shape"] = tuple(meta["shape"])
    objective = dict(strategy=m.strategy, protocol=m.protocol, reweight=m.reweight,
                     targets=m.targets, query=m.query)
    return MODEL_KINDS[m.kind](config, given, head, objective)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AnyOrderModel, Config, dict]:
    """(model in eval mode, its config, its data description) from a checkpoint."""
    weights, config, meta, _ = checkpoint.read(path)
    model = build_model(config, meta)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise checkpoint.CheckpointError(f"checkpoint {path} does not fit its own config: "
                                         f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), config, meta
