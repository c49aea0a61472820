"""Tables on the command line: `anyorder impute` fills the holes of a CSV/TSV file,
`anyorder sample` prints new rows.

This is the one module that joins the table reader (`anyorder.data.tables`) and the
imputer (`anyorder.impute`); neither imports the other.

Written fills use each numeric column's own precision: as many decimals as the most any
of its cells shows (in the training file, `meta["decimals"]`, or in the file being
filled), unless `decimals` asks for "full" (the shortest text that reads back as the
same float64) or a fixed number; integer columns are rounded. Columns never negative in
the training data (`meta["nonnegative"]`) get fills and interval ends >= 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..errors import UserError
from ..files import remove_stale
from ..impute import INTERVAL_DRAWS, check_quantiles, impute, impute_intervals
from ..paths import output_file
from .base import DataError, DataIO
from .tables import (column_decimals, decode_cells, encode_cells, floors, format_cell, read_rows, standardise,
                     unstandardise, write_cells)

DECIMALS = ("column", "full")     # or a number of decimals


def check_decimals(decimals) -> str | int:
    """"column", "full" or a whole number >= 0 of decimals (a digit string is read as one)."""
    if isinstance(decimals, str) and decimals.strip().isdigit():
        decimals = int(decimals)
    if decimals in DECIMALS or (isinstance(decimals, int) and not isinstance(decimals, bool) and decimals >= 0):
        return decimals
    raise UserError(f"decimals must be 'column', 'full' or a whole number >= 0, got {decimals!r}")


def written_decimals(decimals, meta: dict, cells: list[list[str]]) -> list[int | None]:
    """Decimals per column for written fills (None: categorical, or every digit): "column"
    takes the most that the column's cells show, in the training data (`meta["decimals"]`)
    or in `cells`, the file being filled."""
    levels = meta.get("levels") or [None] * len(cells[0])
    if decimals == "full":
        return [None] * len(levels)
    if decimals != "column":
        return [None if lv is not None else decimals for lv in levels]
    trained = meta.get("decimals") or [None] * len(levels)
    return [None if lv is not None else max(trained[j] or 0, column_decimals([row[j] for row in cells]))
            for j, lv in enumerate(levels)]


def intervals_path(output) -> Path:
    """Where `impute_file` writes per-cell intervals: beside `output`, ".intervals" before
    its extension (filled.csv -> filled.intervals.csv, filled.tsv.gz -> filled.intervals.tsv.gz)."""
    output = Path(output).expanduser()
    name = output.name
    gz = ".gz" if name.endswith(".gz") else ""
    plain = name[:-3] if gz else name
    stem, dot, extension = plain.rpartition(".")
    if not dot or not stem:
        stem, extension = plain, "csv"
    return output.with_name(f"{stem}.intervals.{extension}{gz}")


def _file_units(x: torch.Tensor, meta: dict) -> np.ndarray:
    """Model units -> file units (float64), nonnegative columns raised to 0 (the float32
    floor may map back a hair below it)."""
    values = unstandardise(x.double(), meta).numpy()
    marked = np.asarray(meta.get("nonnegative") or [False] * values.shape[-1], dtype=bool)
    values[..., marked] = np.maximum(values[..., marked], 0.0)
    return values


@dataclass
class FileIntervals:
    """`Intervals` in a file's units (numeric values; level ids in categorical columns):
    fill `[N, D]`, draws `[M, N, D]`, quantiles `[Q, N, D]` at `quantile_levels` (numeric
    holes; NaN elsewhere), shares `[N, D, K]` of the draws at each level (categorical holes)."""

    quantile_levels: tuple[float, ...]
    fill: np.ndarray
    draws: np.ndarray
    quantiles: np.ndarray
    shares: np.ndarray


class FileFiller(Protocol):
    """What `impute_file` asks of whatever fills a file's holes, in the file's units (NaN in
    the holes of `raw` `[N, D]`): a trained model (`ModelFiller`) or a fitted
    `anyorder.AnyOrderImputer` (its blend, calibrated intervals and missingness model)."""

    num_samples: int
    """Draws per row for `fill` where the caller names none (intervals take INTERVAL_DRAWS)."""

    def fill(self, raw: np.ndarray, reduce: str, num_samples: int) -> np.ndarray:
        """`raw` filled `[N, D]`; reduce="sample" with num_samples > 1: every draw `[M, N, D]`."""

    def intervals(self, raw: np.ndarray, quantiles: tuple[float, ...], num_samples: int,
                  reduce: str) -> FileIntervals:
        """num_samples draws per row and their per-hole quantiles and level shares; `fill` as
        `reduce` would fill (reduce="mean": the mean of these very draws)."""


class ModelFiller:
    """A trained model as a `FileFiller` (`impute`, `impute_intervals`), with a seeded
    generator, an optional progress bar and the step-budget `query` options."""

    num_samples = 10

    def __init__(self, model, meta: dict, seed: int = 0, progress: bool = False, **query):
        self.model, self.meta = model, meta
        floor = floors(meta)
        self.options = dict(generator=torch.Generator(device=model.device).manual_seed(seed), progress=progress,
                            floor=None if floor is None else floor.float(), **query)

    def _units(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(standardise(raw, self.meta)).float()

    def fill(self, raw: np.ndarray, reduce: str, num_samples: int) -> np.ndarray:
        return _file_units(impute(self.model, self._units(raw), num_samples=num_samples, reduce=reduce,
                                  **self.options), self.meta)

    def intervals(self, raw: np.ndarray, quantiles: tuple[float, ...], num_samples: int,
                  reduce: str) -> FileIntervals:
        found = impute_intervals(self.model, self._units(raw), quantiles, num_samples, **self.options)
        fill = _file_units(found.fill, self.meta) if reduce != "conditional-mean" else self.fill(raw, reduce, 1)
        return FileIntervals(found.quantile_levels, fill, _file_units(found.draws, self.meta),
                             _file_units(found.quantiles, self.meta), found.probabilities.double().numpy())


def _interval_rows(intervals: FileIntervals, meta: dict, missing: np.ndarray, columns: list[str],
                   places: list[int | None]) -> list[list[str]]:
    """One row per hole: row, column, fill, a column per quantile, probability (of the fill),
    probabilities (JSON, level -> share, most likely first); see `impute_file`."""
    levels = meta.get("levels") or [None] * missing.shape[1]
    fill = intervals.fill
    texts = decode_cells(fill, meta, decimals=places)
    quantile_texts = [decode_cells(q, meta, decimals=places) for q in intervals.quantiles]
    shares = intervals.shares
    out = []
    for i, j in zip(*np.nonzero(missing)):
        if levels[j] is None:
            row = [q[i][j] for q in quantile_texts] + ["", ""]
        else:
            share = [round(float(p), 6) for p in shares[i, j, :len(levels[j])]]
            ranked = sorted((k for k, p in enumerate(share) if p > 0), key=lambda k: (-share[k], k))
            row = [""] * len(intervals.quantile_levels) + [format_cell(share[int(fill[i, j])]),
                                                          json.dumps({levels[j][k]: share[k] for k in ranked})]
        out.append([str(i), columns[j], texts[i][j], *row])
    return out


def impute_file(model, meta: dict, input, output, num_samples: int | None = None, reduce: str = "mean",
                seed: int = 0, quantiles=None, progress: bool = False, decimals="column",
                filler: FileFiller | None = None, **query) -> np.ndarray:
    """Fill the missing cells of a CSV/TSV file with a model trained on a table described by
    `meta` (columns, mean, std, levels, integer, decimals, nonnegative) and write the result;
    observed cells are written back as the very text they had, categorical fills as their
    level's text, numeric fills with `decimals` (see the module), integer columns' fills
    rounded; a row with no observed cell is filled from the model's joint. `output` must
    differ from `input` and be writable (checked before any work). reduce="sample" with
    num_samples > 1 writes the draws one after another under an extra first column "draw".
    num_samples None: INTERVAL_DRAWS (100) with `quantiles`, else the filler's own
    (`FileFiller.num_samples`: 10 for a trained model, an imputer's `num_samples`).

    quantiles (e.g. (0.05, 0.95)): also write `intervals_path(output)`, one row per hole
    from `impute_intervals` with `num_samples` draws: row (0 = the first data row), column,
    fill (as in the output), q<level> per quantile (numeric holes, file units),
    probability (the fill's share of the draws) and probabilities (JSON, level -> share)
    for categorical holes. With reduce="mean" the output's fills come from those same draws.

    filler: what fills the holes (`FileFiller`); by default the model itself (`ModelFiller`
    with `seed`, `progress` and the step-budget `query` options).

    Returns the values written (float64, the fills as their written text reads back; level
    ids for categorical columns).
    """
    decimals = check_decimals(decimals)
    output = output_file(output, "output", inputs=(input,))
    side = output_file(intervals_path(output), "intervals output", inputs=(input,)) if quantiles is not None else None
    remove_stale(output.parent)         # .partial files of imputations that were killed
    filler = filler if filler is not None else ModelFiller(model, meta, seed, progress, **query)
    if num_samples is None:
        num_samples = INTERVAL_DRAWS if side is not None else filler.num_samples
    if side is not None:
        quantiles = check_quantiles(quantiles, num_samples)
    columns, cells, lines = read_rows(input)
    expected = meta.get("columns") or columns
    if len(columns) != len(expected):
        raise DataError(f"{input}: {len(columns)} columns, but the model was trained on "
                        f"{len(expected)} ({', '.join(expected)})")
    generated = all(c == f"col{j + 1}" for j, c in enumerate(columns))
    if not generated and columns != expected:
        raise DataError(f"{input}: columns {columns} differ from the model's {expected} "
                        "(same names in the same order, or no header row)")
    levels = meta.get("levels") or [None] * len(expected)
    raw = encode_cells(list(expected), cells, lines, levels, input)
    places = written_decimals(decimals, meta, cells)
    intervals = filler.intervals(raw, quantiles, num_samples, reduce) if side is not None else None
    if intervals is not None:
        filled = intervals.draws if reduce == "sample" else intervals.fill
    else:
        filled = filler.fill(raw, reduce, num_samples)
    missing = np.isnan(raw)
    draws = np.where(missing, filled, raw)
    draws = draws if draws.ndim == 3 else draws[None]
    texts = [decode_cells(draw, meta, decimals=places) for draw in draws]
    numeric = [j for j, lv in enumerate(levels) if lv is None]
    for draw, written in zip(draws, texts):
        for i, j in zip(*np.nonzero(missing[:, numeric])):
            draw[i, numeric[j]] = float(written[i][numeric[j]])
    rows = [[fill if hole else text for fill, hole, text in zip(filled_row, holes, original)]
            for written in texts for filled_row, holes, original in zip(written, missing, cells)]
    if len(draws) > 1:
        rows = [[str(i // len(raw))] + row for i, row in enumerate(rows)]
        header = ["draw"] + list(expected)
        values = np.hstack([np.repeat(np.arange(len(draws)), len(raw))[:, None], draws.reshape(-1, raw.shape[1])])
    else:
        header, values = list(expected), draws[0]
    write_cells(output, header, rows)
    if side is not None:
        names = ["row", "column", "fill", *(f"q{format_cell(q)}" for q in quantiles), "probability", "probabilities"]
        write_cells(side, names, _interval_rows(intervals, meta, missing, list(expected), places))
    return values


class TableIO(DataIO):
    """Tables report nats per row (higher is better); `anyorder sample` prints new rows as TSV
    in the file's units; `anyorder impute` fills the holes of a CSV/TSV file."""

    kind = "table"
    unit = "nats per row"
    valid_metric = "valid_loglik_nats_per_row"

    def valid_value(self, loglik, dim):
        return loglik                   # as `anyorder eval` reports tables: nats per row, higher is better

    def sample_queries(self, args, meta, rows, generator):
        x = torch.zeros(args.num, meta["dim"])
        return x, torch.zeros_like(x, dtype=torch.bool)

    def show_samples(self, args, meta, x, observed, filled):
        print("\t".join(meta.get("columns", [])))
        for row in decode_cells(_file_units(filled, meta), meta, number=lambda v: f"{v:.6g}"):
            print("\t".join(row))

    def impute_file(self, model, meta, args):
        impute_file(model, meta, args.input, args.output, args.num_samples, args.reduce, args.seed,
                    quantiles=args.quantiles, progress=not args.quiet, decimals=args.decimals, filler=args.filler,
                    **args.budget)
        print(f"wrote {args.output}" + (f" and {intervals_path(args.output)}" if args.quantiles else ""))
