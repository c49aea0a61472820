"""Tables: any CSV/TSV file of numeric and categorical columns, and the five
MAF-preprocessed UCI density sets.

Every column is a variable (D = number of columns), numeric or categorical (`infer_kinds`).
Values are float32: numeric columns standardised, `meta["mean"]` / `meta["std"]` mapping
model outputs back to the file's units (`unstandardise`); categorical columns hold their
level id 0..K_j-1 (mean 0, std 1, so standardising leaves ids alone) and
`meta["levels"][j]` the level texts in id order (None for numeric columns).
`meta["integer"][j]` marks numeric columns whose cells are all integers: fills are written
back rounded; `meta["decimals"][j]` is the most decimals a numeric column's cells show
(fills are written with as many, `format_fixed`); `meta["nonnegative"][j]` marks numeric
columns never negative in the train split (fills and intervals stay >= 0, `floors`).
Missing cells (empty, NaN, NA, ?) stay NaN in either kind: the model can train on tables
with holes, and `anyorder.impute` fills them. Rows with no observed cell carry no data:
training skips them (with a warning saying how many); imputation fills them.

Files: split by a seeded row shuffle; mean/std from the train split only.
UCI sets ("power", "gas", "hepmass", "miniboone", "bsds300"): MAF's exact preprocessing and
splits (Papamakarios et al. 2017, gpapamak/maf `datasets/*.py`), so likelihoods compare
with published numbers. MAF already standardises these, so no second standardisation is
applied; meta records MAF's own constants.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import tarfile
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch

from anyorder.data.base import DataError, Dataset, cache_dir
from anyorder.errors import UserError
from anyorder.files import write_atomic

MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}
FEW_LEVELS = 10        # an integer-valued column with at most this many distinct values is categorical
MAX_LEVELS = 1000      # more levels than this: an identifier or free text, not a category
MAF_SETS = ("power", "gas", "hepmass", "miniboone", "bsds300")
MAF_URL = "https://zenodo.org/record/1161203/files/data.tar.gz"
# The standard files inside MAF's data.tar.gz (folder, files) per set.
MAF_FILES = {
    "power": ("power", ["data.npy"]),
    "gas": ("gas", ["ethylene_CO.pickle"]),
    "hepmass": ("hepmass", ["1000_train.csv", "1000_test.csv"]),
    "miniboone": ("miniboone", ["data.npy"]),
    "bsds300": ("BSDS300", ["BSDS300.hdf5"]),
}


# ---------------------------------------------------------------- reading files

def _open_text(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _sniff_delimiter(lines: list[str]) -> str | None:
    """Tab, comma or semicolon; None means runs of whitespace.

    First choice: a delimiter with the same nonzero count on every sampled line; second: one
    present on every line (a ragged row is then reported by line, not misread).
    """
    candidates = ("\t", ",", ";")
    for consistent in (True, False):
        for delimiter in candidates:
            counts = {line.count(delimiter) for line in lines}
            if min(counts) > 0 and (len(counts) == 1 or not consistent):
                return delimiter
    return None


def _is_number(token: str) -> bool:
    if token.strip().lower() in MISSING:
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_column(tokens: list[str], name: str, lines: list[int], path: Path) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        pass
    values = np.empty(len(tokens))
    for i, token in enumerate(tokens):
        token = token.strip()
        if token.lower() in MISSING:
            values[i] = np.nan
            continue
        try:
            values[i] = float(token)
        except ValueError:
            raise DataError(f"{path}: column {name!r} is not numeric "
                            f"(line {lines[i]} has {token!r})") from None
    return values


def _is_missing(token: str) -> bool:
    return token.strip().lower() in MISSING


def read_rows(path) -> tuple[list[str], list[list[str]], list[int]]:
    """Read a CSV/TSV/whitespace table (optionally gzipped) -> (column names, the cells as
    written `[N][D]`, the file's line number of each row).

    The delimiter is sniffed; a first row that is not all numeric is the header (otherwise
    columns are named col1..colD; a table with text columns therefore needs a header row).
    Raises DataError naming the file and line for ragged rows, or an empty table; a row whose
    every cell is missing is kept (imputation fills it; training skips it).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    try:
        with _open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a text table (byte {err.start} is not UTF-8 text); expected "
                        "CSV/TSV") from None
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if "\0" in text:
        raise DataError(f"{path} is not a text table (it holds NUL bytes); expected CSV/TSV")
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: the table is empty")
    delimiter = _sniff_delimiter([line for _, line in numbered[:50]])
    if delimiter is None:
        rows = [line.split() for _, line in numbered]
    else:
        rows = list(csv.reader([line for _, line in numbered], delimiter=delimiter))
    lines = [n for n, _ in numbered]
    header = not all(_is_number(token) for token in rows[0])
    width = len(rows[0])
    names = [t.strip() for t in rows[0]] if header else [f"col{j + 1}" for j in range(width)]
    if header:
        rows, lines = rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{path}: the table has a header but no rows")
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} cells, expected {width}")
    return names, rows, lines


def _numeric(tokens: list[str], name: str, lines: list[int], path) -> np.ndarray:
    """A numeric column's values `[N]` float64 (NaN where missing); DataError for text or inf."""
    values = _parse_column(tokens, name, lines, path)
    if np.isinf(values).any():
        raise DataError(f"{path}: column {name!r} has an infinite value (line {lines[int(np.argmax(np.isinf(values)))]})")
    return values


def read_cells(path) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Read a numeric table file -> (column names, the cells as written `[N][D]`, their
    values `[N, D]` float64, NaN where missing); see `read_rows`. Raises DataError naming
    the file, column and line for anything that is not a number."""
    names, rows, lines = read_rows(path)
    columns = [_numeric([row[j] for row in rows], names[j], lines, path) for j in range(len(names))]
    return names, rows, np.stack(columns, axis=1)


# ---------------------------------------------------------------- column kinds and levels

def _level_key(token: str, by_value: bool):
    return float(token) if by_value else token.strip()


def _levels_by_value(tokens) -> bool:
    """Whether a categorical column's cells are matched by value (every level a number:
    1, 1.0 and 01 are one level) rather than by text."""
    return all(_is_number(token) for token in tokens)


def column_levels(tokens: list[str]) -> list[str]:
    """The levels of a categorical column in id order: numbers by value (each written as
    it first appears), otherwise texts in sorted (code point) order, surrounding spaces
    removed; missing cells are no level."""
    by_value = _levels_by_value(tokens)
    first: dict = {}
    for token in tokens:
        if not _is_missing(token):
            first.setdefault(_level_key(token, by_value), token.strip())
    return [first[key] for key in sorted(first)]


def encode_levels(tokens: list[str], levels: list[str], name: str, lines: list[int], path) -> np.ndarray:
    """Level ids `[N]` float64 (NaN where missing) of a categorical column's cells; a value
    that is none of `levels` is a DataError naming the column, the value and its line."""
    by_value = _levels_by_value(levels)
    ids = {_level_key(level, by_value): i for i, level in enumerate(levels)}
    out = np.full(len(tokens), np.nan)
    for i, token in enumerate(tokens):
        if _is_missing(token):
            continue
        try:
            out[i] = ids[_level_key(token, by_value)]
        except (KeyError, ValueError):
            shown = ", ".join(levels[:10]) + (", …" if len(levels) > 10 else "")
            raise DataError(f"{path}: column {name!r} has the value {token.strip()!r} (line {lines[i]}), "
                            f"which is not one of its {len(levels)} levels ({shown})") from None
    return out


def infer_kinds(names: list[str], rows: list[list[str]], categorical=(), numeric=(), source="table") -> list[bool]:
    """Which columns are categorical: those named in `categorical`, none named in `numeric`,
    and otherwise a column with any text cell (not a number, not missing) or with integer
    values only and at most FEW_LEVELS distinct ones (binary columns included)."""
    for what, given in (("categorical", categorical), ("numeric", numeric)):
        unknown = [name for name in given if name not in names]
        if unknown:
            raise DataError(f"{source}: data.{what} names {unknown}: no such column (columns: {', '.join(names)})")
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise UserError(f"column(s) {both} are in both data.categorical and data.numeric; name each in one")
    kinds = []
    for j, name in enumerate(names):
        if name in categorical or name in numeric:
            kinds.append(name in categorical)
            continue
        tokens = [row[j] for row in rows]
        if not _levels_by_value(tokens):
            kinds.append(True)
            continue
        values = _parse_column(tokens, name, list(range(len(tokens))), source)
        values = values[~np.isnan(values)]
        kinds.append(bool(np.all(values == np.round(values))) and len(np.unique(values)) <= FEW_LEVELS)
    return kinds


def encode_cells(names: list[str], rows: list[list[str]], lines: list[int], levels: list, path) -> np.ndarray:
    """Cells `[N][D]` -> values `[N, D]` float64: numbers for numeric columns (levels[j]
    None), level ids for categorical ones, NaN where missing."""
    columns = []
    for j, name in enumerate(names):
        tokens = [row[j] for row in rows]
        columns.append(_numeric(tokens, name, lines, path) if levels[j] is None
                       else encode_levels(tokens, levels[j], name, lines, path))
    return np.stack(columns, axis=1)


def decode_cells(values: np.ndarray, meta: dict, number=None, decimals=None) -> list[list[str]]:
    """Values `[N, D]` in file units (level ids for categorical columns) -> cell texts: level
    texts, integers for integer columns, numbers with `decimals[j]` digits after the point
    (`format_fixed`) where that is given (not None), else as `number(value)` writes them
    (default the shortest exact text); NaN is an empty cell."""
    number = number or format_cell
    levels = meta.get("levels") or [None] * values.shape[1]
    integer = meta.get("integer") or [False] * values.shape[1]
    decimals = decimals or [None] * values.shape[1]
    columns = []
    for j, column in enumerate(np.asarray(values, dtype=np.float64).T.tolist()):
        if levels[j] is not None:
            columns.append(["" if v != v else levels[j][int(v)] for v in column])
        elif integer[j]:
            columns.append(["" if v != v else number(float(round(v))) for v in column])
        elif decimals[j] is not None:
            columns.append([format_fixed(v, decimals[j]) for v in column])
        else:
            columns.append(["" if v != v else number(v) for v in column])
    return [list(row) for row in zip(*columns)]


def read_table(path) -> tuple[list[str], np.ndarray]:
    """(column names, `[N, D]` float64) of a numeric table file; see `read_cells`."""
    names, _, table = read_cells(path)
    return names, table


def token_decimals(token: str) -> int:
    """How many decimals a numeric cell's text shows: "317.6" 1, "12" 0, "1.5e-3" 4,
    "2.5E+2" 0 (the digits after the point, less the exponent, never below 0)."""
    mantissa, _, exponent = token.strip().lower().partition("e")
    digits = len(mantissa.partition(".")[2])
    try:
        shift = int(exponent) if exponent else 0
    except ValueError:
        shift = 0
    return max(0, digits - shift)


def column_decimals(tokens: list[str]) -> int:
    """The most decimals any observed cell of a numeric column shows (`token_decimals`);
    0 when every cell is missing."""
    return max((token_decimals(t) for t in tokens if not _is_missing(t)), default=0)


def format_fixed(value: float, decimals: int) -> str:
    """`value` with `decimals` digits after the point ("-0.0" is written "0.0"); NaN is an
    empty cell."""
    if value != value:
        return ""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_cell(value: float) -> str:
    """The shortest text that reads back as the same float64; NaN is an empty cell."""
    if value != value:
        return ""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def write_cells(path, columns: list[str], rows: list[list[str]]) -> None:
    """Write text cells under a header row: tab-separated for .tsv/.tab, else comma-separated;
    gzipped for .gz. Written through `files.write_atomic`, so a failure leaves no partial file."""
    path = Path(path).expanduser()
    plain = path.name[:-3] if path.name.endswith(".gz") else path.name
    delimiter = "\t" if plain.endswith((".tsv", ".tab")) else ","

    def write(stream) -> None:
        binary = gzip.GzipFile(fileobj=stream, mode="wb") if path.name.endswith(".gz") else stream
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
        writer.writerow(list(columns))
        writer.writerows(rows)
        text.flush()
        text.detach()
        if binary is not stream:
            binary.close()              # writes gzip's trailer; the stream stays open
    write_atomic(path, write)


def write_table(path, columns: list[str], table) -> None:
    """Write `[N, D]` values with every digit kept (NaN as an empty cell), so `read_table`
    gives back the same float64 numbers; see `write_cells` for the format."""
    table = np.asarray(table, dtype=np.float64)
    write_cells(path, columns, [[format_cell(v) for v in row] for row in table.tolist()])


# ---------------------------------------------------------------- standardisation

def _stats(meta: dict, like):
    mean, std = meta["mean"], meta["std"]
    if isinstance(like, torch.Tensor):
        return (torch.tensor(mean, dtype=like.dtype, device=like.device),
                torch.tensor(std, dtype=like.dtype, device=like.device))
    return np.asarray(mean), np.asarray(std)


def standardise(table, meta: dict):
    """File units -> model units: (x - mean) / std per column; numpy or torch `[..., D]`."""
    mean, std = _stats(meta, table)
    return (table - mean) / std


def unstandardise(x, meta: dict):
    """Model units -> file units: x * std + mean per column; numpy or torch `[..., D]`."""
    mean, std = _stats(meta, x)
    return x * std + mean


def floors(meta: dict) -> torch.Tensor | None:
    """The least value of each column in model units `[D]` float64: that of 0 in file units
    for columns `meta["nonnegative"]` marks, -inf for the others; None when none is marked
    (older checkpoints record nothing)."""
    marked = meta.get("nonnegative") or []
    if not any(marked):
        return None
    mean, std = (torch.tensor(meta[key], dtype=torch.float64) for key in ("mean", "std"))
    return torch.where(torch.tensor(marked), -mean / std, -torch.inf)


def _column_stats(train: np.ndarray, names: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    observed = ~np.isnan(train)
    for j, name in enumerate(names):
        if not observed[:, j].any():
            raise DataError(f"{source}: column {name!r} is entirely missing in the train split")
    # On each column scaled into [-1, 1] first: the sums of squares of values near 1e160
    # (or sums of values near 1e308) overflow float64, an infinite std turned every fill into -inf.
    scale = np.nanmax(np.abs(train), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    mean = np.nanmean(train / scale, axis=0) * scale
    std = np.nanstd(train / scale, axis=0) * scale
    for j, name in enumerate(names):
        if not std[j] > 0:
            raise DataError(f"{source}: column {name!r} is constant in the train split "
                            f"(value {mean[j]:g}); drop it, it carries no information")
    return mean, std


def _dataset(source: str, names: list[str], train, valid, test, mean, std, levels=None, integer=None,
             decimals=None, nonnegative=None) -> Dataset:
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    splits = {name: as_tensor(part) for name, part in (("valid", valid), ("test", test)) if len(part)}
    meta = {"source": source, "columns": list(names),
            "mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "levels": levels or [None] * len(names), "integer": integer or [False] * len(names),
            "decimals": decimals or [None] * len(names), "nonnegative": nonnegative or [False] * len(names)}
    return Dataset(kind="table", dim=len(names), num_classes=None, train=as_tensor(train),
                   splits=splits, meta=meta)


def _file_columns(path, drop, categorical, numeric):
    """(names, values `[N, D]` float64, levels, decimals) of a table file's kept columns
    (decimals None for categorical columns)."""
    names, rows, lines = read_rows(path)
    unknown = [name for name in drop if name not in names]
    if unknown:
        raise DataError(f"{path}: cannot drop {unknown}: no such column (columns: {', '.join(names)})")
    keep = [j for j, name in enumerate(names) if name not in drop]
    if not keep:
        raise DataError(f"{path}: dropping {list(drop)} leaves no column")
    names, rows = [names[j] for j in keep], [[row[j] for j in keep] for row in rows]
    kinds = infer_kinds(names, rows, categorical, numeric, str(path))
    levels = []
    for j, name in enumerate(names):
        tokens = [row[j] for row in rows]
        if all(_is_missing(token) for token in tokens):
            raise DataError(f"{path}: column {name!r} is entirely missing")
        found = column_levels(tokens) if kinds[j] else None
        if found is not None and len(found) < 2:
            raise DataError(f"{path}: column {name!r} is constant (every cell is {found[0]!r} or missing); "
                            "drop it, it carries no information")
        if found is not None and len(found) > MAX_LEVELS:
            raise DataError(f"{path}: column {name!r} has {len(found)} distinct values, more than the "
                            f"{MAX_LEVELS} a categorical column may have; drop it (data.drop) or name it "
                            "in data.numeric")
        levels.append(found)
    table = encode_cells(names, rows, lines, levels, path)
    decimals = [None if levels[j] is not None else column_decimals([row[j] for row in rows])
                for j in range(len(names))]
    return names, table, levels, decimals


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise UserError(f"{name} must lie in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1:
        raise UserError(f"valid_fraction + test_fraction must be < 1, got {valid_fraction + test_fraction}")


def _file_table(path, valid_fraction: float, test_fraction: float, seed: int, drop,
                categorical, numeric) -> Dataset:
    check_fractions(valid_fraction, test_fraction)
    names, table, levels, decimals = _file_columns(path, drop, categorical, numeric)
    return table_dataset(str(path), names, table, levels, decimals, valid_fraction, test_fraction, seed)


def table_dataset(source: str, names: list[str], table: np.ndarray, levels: list, decimals: list,
                  valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A table's values `[N, D]` float64 in file units (level ids in categorical columns,
    `levels[j]` their texts or None for a numeric column; NaN where missing) as a Dataset:
    rows with no observed cell skipped (a warning says how many), the rest split by a
    seeded shuffle, numeric columns standardised with train statistics; see `load_table`."""
    path = source
    for name, found in zip(names, levels):
        if found is not None and len(found) < 2:
            raise DataError(f"{path}: column {name!r} is constant (every cell is "
                            f"{found[0] if found else 'missing'!r} or missing); drop it, it carries no information")
    empty = np.isnan(table).all(1)
    if empty.all():
        raise DataError(f"{path}: every row is entirely missing; there is nothing to train on")
    if empty.any():
        warnings.warn(f"{path}: skipped {int(empty.sum())} of {len(table)} rows with every cell "
                      "missing (they carry no data to train on)", stacklevel=2)
        table = table[~empty]
    observed = ~np.isnan(table)
    integer = [levels[j] is None and bool(np.all(table[observed[:, j], j] % 1 == 0)) for j in range(len(names))]
    n = len(table)
    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    for split, fraction, rows in (("valid", valid_fraction, n_valid), ("test", test_fraction, n_test)):
        if fraction > 0 and rows == 0:
            raise DataError(f"{path}: {n} rows are too few for a {split} split of {fraction:g} (0 rows); "
                            f"use more rows or data.{split}_fraction=0")
    if n - n_test - n_valid < 1:
        raise DataError(f"{path}: {n} rows leave no train rows after the valid/test split")
    order = np.random.default_rng(seed).permutation(n)
    test, valid, train = (table[order[:n_test]], table[order[n_test:n_test + n_valid]],
                          table[order[n_test + n_valid:]])
    numeric_columns = [j for j, found in enumerate(levels) if found is None]
    mean, std = np.zeros(len(names)), np.ones(len(names))
    if numeric_columns:
        mean[numeric_columns], std[numeric_columns] = _column_stats(
            train[:, numeric_columns], [names[j] for j in numeric_columns], str(path))
    for j in set(range(len(names))) - set(numeric_columns):
        if np.isnan(train[:, j]).all():
            raise DataError(f"{path}: column {names[j]!r} is entirely missing in the train split")
    nonnegative = [levels[j] is None and bool(np.nanmin(train[:, j]) >= 0) for j in range(len(names))]
    meta = {"mean": mean, "std": std}
    return _dataset(source, names, *(standardise(part, meta) for part in (train, valid, test)),
                    mean, std, levels, integer, decimals, nonnegative)



# ---------------------------------------------------------------- MAF's UCI sets

def _find(name: str, path) -> dict[str, Path]:
    """Locate a set's standard files under `path` (the set's folder or MAF's data root) or the cache."""
    folder, files = MAF_FILES[name]
    root = Path(path).expanduser() if path is not None else cache_dir(name)
    for base in (root, root / folder, root / "data" / folder):
        if all((base / f).is_file() for f in files):
            return {f: base / f for f in files}
    if path is not None:
        raise DataError(f"{name}: {' and '.join(files)} not found under {root}; put MAF's files "
                        f"there (data/{folder}/ of {MAF_URL})")
    _download(name, root)
    return {f: root / f for f in files}


def _download(name: str, dest: Path) -> None:
    """Fetch MAF's data.tar.gz (all five sets, about 1 GB) and extract this set into `dest`."""
    folder, files = MAF_FILES[name]
    archive = dest.parent / "maf-data.tar.gz"
    hint = (f"{name}: no local copy in {dest}; download {MAF_URL} and put data/{folder}/"
            f"{{{','.join(files)}}} there, or pass path=")
    if not archive.is_file():
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(MAF_URL, timeout=30) as response, \
                    open(archive.with_suffix(".part"), "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
            archive.with_suffix(".part").rename(archive)
        except OSError as error:
            raise DataError(f"{hint} (download failed: {error})") from None
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for f in files:
            try:
                member = tar.extractfile(f"data/{folder}/{f}")
            except KeyError:
                raise DataError(f"{hint} ({archive} has no data/{folder}/{f})") from None
            with member, open(dest / f, "wb") as out:
                shutil.copyfileobj(member, out, length=1 << 20)


def _tail_splits(data: np.ndarray):
    """MAF's split: test = last 10% of rows, valid = last 10% of the rest."""
    n_test = int(0.1 * len(data))
    rest, test = data[:len(data) - n_test], data[len(data) - n_test:]
    n_valid = int(0.1 * len(rest))
    return rest[:len(rest) - n_valid], rest[len(rest) - n_valid:], test


def _power(files):
    rng = np.random.RandomState(42)
    data = np.load(files["data.npy"])
    rng.shuffle(data)
    n = len(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    # MAF's dequantisation noise, drawn in MAF's order: voltage, gap, sub-metering; none on time.
    voltage, gap, sub = 0.01 * rng.rand(n, 1), 0.001 * rng.rand(n, 1), rng.rand(n, 3)
    data = data + np.hstack((gap, voltage, sub, np.zeros((n, 1))))
    return None, *_normalise_by_train_and_valid(_tail_splits(data))


def _normalise_by_train_and_valid(splits):
    """POWER and MINIBOONE: MAF standardises with the mean/std of train and valid together."""
    both = np.vstack(splits[:2])
    mean, std = both.mean(0), both.std(0)
    return tuple((part - mean) / std for part in splits), mean, std


def _gas(files):
    try:
        import pandas as pd
    except ImportError:
        raise DataError("gas: reading MAF's ethylene_CO.pickle needs pandas (pip install pandas)") from None
    frame = pd.read_pickle(files["ethylene_CO.pickle"]).drop(columns=["Meth", "Eth", "Time"])
    names, data = [str(c) for c in frame.columns], frame.to_numpy(dtype=np.float64)
    # Drop, one at a time, the first column correlated above 0.98 with another.
    while True:
        counts = (np.corrcoef(data, rowvar=False) > 0.98).sum(axis=1)
        if not (counts > 1).any():
            break
        drop = int(np.argmax(counts > 1))
        data, names = np.delete(data, drop, axis=1), names[:drop] + names[drop + 1:]
    mean, std = data.mean(0), data.std(0, ddof=1)
    return names, _tail_splits((data - mean) / std), mean, std


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path) as f:
        names = [n.strip() for n in f.readline().split(",")]
        data = np.loadtxt(f, delimiter=",", ndmin=2)
    return names, data


def _hepmass(files):
    names, train = _read_csv(files["1000_train.csv"])
    _, test = _read_csv(files["1000_test.csv"])
    # Keep the signal class (label 1) and drop the label; the test file also loses its
    # last column ("because the data set is messed up", MAF).
    train = train[train[:, 0] == 1][:, 1:]
    test = test[test[:, 0] == 1][:, 1:-1]
    names = names[1:]
    if train.shape[1] != test.shape[1]:
        raise DataError(f"hepmass: {files['1000_test.csv']} has {test.shape[1]} columns after "
                        f"MAF's drops but the train file has {train.shape[1]}; expected UCI's 1000_*.csv")
    mean, std = train.mean(0), train.std(0, ddof=1)
    train, test = (train - mean) / std, (test - mean) / std
    # MAF drops features whose smallest value occurs more than 5 times (it meant "most
    # repeated value", but counts the first key of the sorted Counter); reproduced exactly.
    keep = np.array([(col == col.min()).sum() <= 5 for col in train.T])
    train, test, mean, std = train[:, keep], test[:, keep], mean[keep], std[keep]
    n_valid = int(0.1 * len(train))
    splits = (train[:len(train) - n_valid], train[len(train) - n_valid:], test)
    return [n for n, k in zip(names, keep) if k], splits, mean, std


def _miniboone(files):
    return None, *_normalise_by_train_and_valid(_tail_splits(np.load(files["data.npy"])))


def _bsds300(files):
    try:
        import h5py
    except ImportError:
        raise DataError("bsds300: reading BSDS300.hdf5 needs h5py (pip install h5py)") from None
    with h5py.File(files["BSDS300.hdf5"], "r") as f:
        splits = tuple(np.asarray(f[key], dtype=np.float64) for key in ("train", "validation", "test"))
    dim = splits[0].shape[1]
    return None, splits, np.zeros(dim), np.ones(dim)


def _maf_table(name: str, path) -> Dataset:
    """Each loader returns (names or None, MAF's standardised (train, valid, test), mean, std),
    mean/std being MAF's own constants (0 and 1 for BSDS300, which MAF leaves as is)."""
    loader = {"power": _power, "gas": _gas, "hepmass": _hepmass,
              "miniboone": _miniboone, "bsds300": _bsds300}[name]
    names, splits, mean, std = loader(_find(name, path))
    names = names or [f"x{j + 1}" for j in range(splits[0].shape[1])]
    return _dataset(name, names, *splits, mean, std)


# ---------------------------------------------------------------- entry point

def load_table(source, path=None, valid_fraction: float = 0.1, test_fraction: float = 0.1,
               seed: int = 0, drop: list[str] | tuple = (), categorical: list[str] | tuple = (),
               numeric: list[str] | tuple = ()) -> Dataset:
    """A table as a Dataset (kind "table", float32 `[N, D]`, NaN where missing).

    `source` is a CSV/TSV file (split by a seeded shuffle into train/valid/test, numeric
    columns standardised with train statistics) or one of "power", "gas", "hepmass",
    "miniboone", "bsds300" (MAF's files under `path`, else `cache_dir(name)`, downloaded
    where a network exists; MAF's fixed splits, so the fractions and seed do not apply).
    `drop` names columns of a file to leave out. Column kinds are inferred (`infer_kinds`);
    `categorical` / `numeric` name columns whose kind is set instead. A categorical
    column's levels (`column_levels`) are those of the whole file, so a rare level that the
    shuffle puts only in the valid or test rows still has an id.
    """
    if str(source).lower() in MAF_SETS and not Path(str(source)).is_file():
        if drop or categorical or numeric:
            raise UserError(f"drop, categorical and numeric are for table files; {source} has MAF's fixed columns")
        return _maf_table(str(source).lower(), path)
    if path is not None:
        raise UserError(f"path= is for the UCI sets {', '.join(MAF_SETS)}; for a file pass it as source")
    for what, given in (("drop", drop), ("categorical", categorical), ("numeric", numeric)):
        if isinstance(given, str):
            raise UserError(f"{what} must be a list of column names, got the string {given!r}")
    return _file_table(source, valid_fraction, test_fraction, seed, drop, categorical, numeric)
