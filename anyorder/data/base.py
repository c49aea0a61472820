"""The interfaces between data sources and the rest: `Dataset` (what the trainer and the
evaluator read) and `DataIO` (what the command line asks and prints for one kind of data)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import UserError


class DataError(UserError):
    """A user-facing problem with data files or data values (the CLI prints it on one line)."""


def cache_dir(source: str = "") -> Path:
    """Where every data source looks for (and downloads) its files when no path is given:
    $ANYORDER_CACHE/<source>, else $XDG_CACHE_HOME/anyorder/<source>, else
    ~/.cache/anyorder/<source>."""
    root = os.environ.get("ANYORDER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                      Path.home() / ".cache") / "anyorder"
    return Path(root) / source


@dataclass
class Dataset:
    """Flattened variables x = (x_1 … x_D) from one source, already split.

    `train` is what `train_batch` draws from (a token stream for text, rows otherwise);
    `splits` maps "valid" / "test" to fixed tensors `[N, D]`. Categorical data is int64 in
    0..num_classes-1; continuous data (num_classes None) is float32. `meta` is plain
    JSON-able data saved in checkpoints so that decoding needs no data files; `note` a
    line for the user on what the data became (e.g. how a text was cleaned).
    """

    kind: str                                   # "text" | "image" | "table"
    dim: int
    num_classes: int | None
    train: torch.Tensor
    splits: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    batch_fn: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor] | None = None
    note: str = ""

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
            known = sorted(self.splits) + (["train"] if self.batch_fn is None else [])
            raise DataError(f"this data has no {name!r} split" + (f"; it has {', '.join(known)}" if known else
                            " (its split fractions leave it empty)"))
        return self.splits[name]


def complete_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows `[N, D]` without missing (NaN) cells: a likelihood needs every cell of a row."""
    return rows[~torch.isnan(rows).any(-1)] if rows.is_floating_point() else rows


class DataIO:
    """Command-line input and output of one kind of data, kept beside its loader and found by
    `Dataset.kind` in `anyorder.data.IO`, so the command line never branches on the kind.

    `unit` is what `anyorder eval` reports in (`anyorder.evaluate.report_lines`); `sample_options` are this kind's options of
    `anyorder sample`, as (flags, argparse keywords) pairs; an option left unset is None (or False). `sample_queries` turns them into
    the query (x `[N, D]`, observed `[N, D]` bool) and `show_samples` prints or writes the
    filled rows. `impute_file` fills the holes of a file (tables only). `variable` names one
    of the D variables in reports (a compressed size is quoted per variable).
    """

    kind: str = ""
    variable: str = "dimension"
    unit: str = "bpd"
    sample_options: Sequence[tuple[tuple[str, ...], dict]] = ()
    valid_metric: str = "valid_bpd"     # the metrics.csv column of training's validation figure

    def valid_value(self, loglik: float, dim: int) -> float:
        """The validation figure training logs, from the mean log-likelihood of validation
        rows (nats per row), in the units `summary` reports: bits per dimension."""
        return -loglik / (dim * math.log(2))

    def variable_name(self, meta: dict) -> str:
        """What one variable of this model is called in reports (`variable`)."""
        return self.variable

    def check_sample_args(self, args) -> None:
        """Refuse unusable options (e.g. an output path) before any work is done."""

    def sample(self, args, meta: dict, rows: Callable[[], torch.Tensor], generator: torch.Generator,
               fill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """`anyorder sample`: the query of `sample_queries`, filled by `fill(x, observed)` (the
        model's sampler on rows of D), shown by `show_samples`. A kind whose queries are not
        rows of D (a text prompt of any length) answers them here."""
        x, observed = self.sample_queries(args, meta, rows, generator)
        self.show_samples(args, meta, x, observed, fill(x, observed))

    def sample_queries(self, args, meta: dict, rows: Callable[[], torch.Tensor],
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, observed) for `args.num` samples; `rows()` gives the first `args.num` rows of
        `args.split` when they are needed."""
        raise NotImplementedError

    def show_samples(self, args, meta: dict, x: torch.Tensor, observed: torch.Tensor,
                     filled: torch.Tensor) -> None:
        raise NotImplementedError

    def impute_file(self, model, meta: dict, args) -> None:
        raise UserError(f"impute fills the holes of tables; this model was trained on {self.kind} data")
