"""Data sources. Each module turns files into a `Dataset`; `load_data` picks one by kind."""

from __future__ import annotations

import importlib

from .base import DataError, DataIO, Dataset, complete_rows
from ..registry import build

LOADERS = {
    "text": ("anyorder.data.text", "load_text"),
    "image": ("anyorder.data.images", "load_images"),
    "table": ("anyorder.data.tables", "load_table"),
}


IO = {
    "text": ("anyorder.data.text", "TextIO"),
    "image": ("anyorder.data.images", "ImageIO"),
    "table": ("anyorder.data.table_io", "TableIO"),
}


def load_data(spec: dict) -> Dataset:
    """`{"kind": "text" | "image" | "table", **loader keyword arguments}` -> Dataset."""
    return build(LOADERS, spec, "data")


def data_io(kind: str) -> DataIO:
    """The command-line input/output of a data kind (see `DataIO`)."""
    if kind not in IO:
        raise DataError(f"unknown data kind {kind!r}; expected one of {', '.join(IO)}")
    module, name = IO[kind]
    return getattr(importlib.import_module(module), name)()


__all__ = ["DataError", "DataIO", "Dataset", "complete_rows", "IO", "LOADERS", "data_io", "load_data"]
