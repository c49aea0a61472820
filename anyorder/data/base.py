"""The one interface between data sources and the trainer, evaluator and CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


class DataError(ValueError):
    """A user-facing problem with data files or data values (the CLI prints it on one line)."""


@dataclass
class Dataset:
    """Flattened variables x = (x_1 … x_D) from one source, already split.

    `train` is what `train_batch` draws from (a token stream for text, rows otherwise);
    `splits` maps "valid" / "test" to fixed tensors `[N, D]`. Categorical data is int64 in
    0..num_classes-1; continuous data (num_classes None) is float32. `meta` is plain
    JSON-able data saved in checkpoints so that decoding needs no data files.
    """

    kind: str                                   # "text" | "image" | "table"
    dim: int
    num_classes: int | None
    train: torch.Tensor
    splits: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    batch_fn: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor] | None = None

    def train_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A random training batch `[batch_size, D]` (crops, flips, … are the source's `batch_fn`)."""
        if self.batch_fn is not None:
            return self.batch_fn(self.train, batch_size, generator)
        rows = torch.randint(len(self.train), (batch_size,), generator=generator)
        return self.train[rows]

    def split(self, name: str) -> torch.Tensor:
        if name == "train" and self.batch_fn is None:
            return self.train
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; this data has {sorted(self.splits)}")
        return self.splits[name]
