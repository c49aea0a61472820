"""Data sources. Each module turns files into a `Dataset`; `load_data` picks one by kind."""

from __future__ import annotations

from .base import DataError, Dataset
from ..registry import build

LOADERS = {
    "text": ("anyorder.data.text", "load_text"),
    "image": ("anyorder.data.images", "load_images"),
    "table": ("anyorder.data.tables", "load_table"),
}


def load_data(spec: dict) -> Dataset:
    """`{"kind": "text" | "image" | "table", **loader keyword arguments}` -> Dataset."""
    return build(LOADERS, spec, "data")


__all__ = ["DataError", "Dataset", "LOADERS", "load_data"]
