"""pandas DataFrames and numpy arrays as tables of numbers: each column numeric or
categorical, encoded as float64 `[N, D]` (level ids in categorical columns, NaN where
missing) and decoded back into the very container, dtypes and observed cells it came in.

Kinds follow dtypes: category, bool, boolean, object and string columns are categorical
(levels: a category's categories, False/True, or the sorted distinct values); every other
column is numeric, unless named in `categorical`. A numpy array is numeric, or, as an
object array, numeric per column where every cell reads as a number. pandas is imported
only when a DataFrame is passed.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from .errors import UserError


@dataclass
class Column:
    """One column's schema: its name, whether it is categorical, its levels (in id order),
    its dtype (as given: restored on output) and whether its fills must be whole numbers."""

    name: object
    categorical: bool
    levels: list | None
    dtype: object
    integer: bool

    def to_json(self) -> dict:
        return {"name": _plain(self.name), "categorical": self.categorical,
                "levels": None if self.levels is None else [_plain(v) for v in self.levels],
                "dtype": str(self.dtype), "integer": self.integer}

    @classmethod
    def from_json(cls, raw: dict) -> "Column":
        return cls(raw["name"], raw["categorical"], raw["levels"], _dtype(raw["dtype"]), raw["integer"])


def _plain(value):
    """A JSON-able stand-in for a name or level (numpy scalars as Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _dtype(name: str):
    try:
        return np.dtype(name)
    except TypeError:
        import pandas as pd
        return pd.api.types.pandas_dtype(name)


def is_frame(X) -> bool:
    """Whether X is a pandas DataFrame (without importing pandas when it is not loaded)."""
    return type(X).__module__.startswith("pandas") and hasattr(X, "columns") and hasattr(X, "iloc")


def is_missing(value) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:       # pandas.NA refuses to be a bool: it is missing
        return True


def _sorted_levels(values, name) -> list:
    try:
        found = {v for v in values if not is_missing(v)}
    except TypeError:           # unhashable: a list or dict in a cell
        i, value = next((i, v) for i, v in enumerate(values) if not isinstance(v, Hashable))
        raise UserError(f"column {name!r} has the value {value!r} (row {i}), a {type(value).__name__}; cells must be "
                        "numbers, text, booleans or missing") from None
    try:
        return sorted(found)
    except TypeError:        # mixed types: by their text
        return sorted(found, key=str)


def _column_values(X, j: int):
    """Column j of a DataFrame (its Series) or of a 2-D array (a 1-D array)."""
    return X.iloc[:, j] if is_frame(X) else X[:, j]


def infer_columns(X, categorical=()) -> list[Column]:
    """The schema of a DataFrame or 2-D array; `categorical` names (DataFrame) or indexes
    (array) columns to treat as categorical whatever their dtype."""
    names = list(X.columns) if is_frame(X) else list(range(X.shape[1]))
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise UserError(f"categorical names {unknown}, which are not columns of X (columns: {names})")
    columns = []
    for j, name in enumerate(names):
        values = _column_values(X, j)
        dtype = values.dtype
        kind = getattr(dtype, "kind", "O")     # pandas' category and string dtypes: "O"
        if kind not in "biufOSU":
            raise UserError(f"column {name!r} has dtype {dtype}; expected numbers, booleans, categories or text")
        if name in categorical or kind in "bOSU":
            columns.append(_categorical(name, values, dtype))
        else:
            columns.append(Column(name, False, None, dtype, kind in "iu"))
    return [_object_numbers(c, _column_values(X, j)) for j, c in enumerate(columns)]


def _categorical(name, values, dtype) -> Column:
    if str(dtype) == "category":
        levels = list(values.cat.categories)
    elif str(dtype) in ("bool", "boolean"):
        levels = [False, True]
    else:
        levels = _sorted_levels(np.asarray(values, dtype=object).tolist(), name)
    return Column(name, True, levels, dtype, False)


def _object_numbers(column: Column, values) -> Column:
    """An object column of an array whose every observed cell is a number is numeric
    (float() raising TypeError, e.g. for a dict, is the caller's error to see)."""
    if not column.categorical or str(column.dtype) != "object" or not isinstance(values, np.ndarray):
        return column
    try:
        np.asarray([np.nan if is_missing(v) else float(v) for v in values.tolist()], dtype=np.float64)
    except ValueError:
        return column
    return Column(column.name, False, None, np.dtype(np.float64), False)


def encode(X, columns: list[Column]) -> np.ndarray:
    """X -> float64 `[N, D]`: numbers, level ids, NaN where missing. A level not in the
    schema is a UserError naming the column and the value."""
    out = np.empty((len(X), len(columns)))
    for j, column in enumerate(columns):
        values = _column_values(X, j)
        if not column.categorical:
            try:
                out[:, j] = _numbers(values)
            except (TypeError, ValueError):
                i, value = _first_non_number(values)
                raise UserError(f"column {column.name!r} is numeric (as in fit) but has the value {value!r} "
                                f"(row {i}), which is not a number") from None
            continue
        ids = {level: i for i, level in enumerate(column.levels)}
        cells = np.asarray(values, dtype=object).tolist()
        for i, value in enumerate(cells):
            if is_missing(value):
                out[i, j] = np.nan
            elif value in ids:
                out[i, j] = ids[value]
            else:
                shown = ", ".join(map(repr, column.levels[:10])) + (", …" if len(column.levels) > 10 else "")
                raise UserError(f"column {column.name!r} has the value {value!r} (row {i}), which is not one of the "
                                f"{len(column.levels)} levels seen in fit ({shown})")
    return out


def _numbers(values) -> np.ndarray:
    if type(values).__module__.startswith("pandas"):
        return values.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.asarray(values)
    if values.dtype == object:
        return np.asarray([np.nan if is_missing(v) else float(v) for v in values.tolist()], dtype=np.float64)
    return values.astype(np.float64)


def _first_non_number(values) -> tuple[int, object]:
    """(row, value) of the first cell of a column that is neither missing nor a number."""
    for i, value in enumerate(np.asarray(values, dtype=object).tolist()):
        try:
            if not is_missing(value):
                float(value)
        except (TypeError, ValueError):
            return i, value
    raise AssertionError("every cell is a number")        # only called after a conversion failed


def decode(X, filled: np.ndarray, columns: list[Column], holes: np.ndarray):
    """A copy of X (DataFrame or array) with its missing cells set from `filled` `[N, D]`
    (file units; level ids in categorical columns): observed cells are X's own, untouched;
    dtypes are kept; integer columns get rounded fills. `holes` `[N, D]`: the missing cells,
    NaN in `encode(X, columns)` (so text reading as NaN, "nan" in an array of text, is one)."""
    if is_frame(X):
        return _decode_frame(X, filled, holes, columns)
    out = np.array(X, copy=True)
    if out.dtype.kind in "US":      # text (numbers and levels alike): its cells kept, fills beside them
        out = out.astype(object)
    elif out.dtype.kind not in "fO":
        out = out.astype(np.float64)
    for j, column in enumerate(columns):
        rows = np.flatnonzero(holes[:, j])
        if len(rows):
            out[rows, j] = _fills(filled[rows, j], column)
    return out


def _fills(values: np.ndarray, column: Column):
    """Fills in a column's own terms: levels, whole numbers or floats."""
    if column.categorical:
        return np.array([column.levels[int(v)] for v in values] + [None], dtype=object)[:-1]
    return np.round(values) if column.integer else values


def _decode_frame(X, filled, holes, columns):
    import pandas as pd
    out = X.copy()
    for j, column in enumerate(columns):
        rows = np.flatnonzero(holes[:, j])
        if not len(rows):
            continue
        values = X.iloc[:, j].array.copy()
        fills = _fills(filled[rows, j], column)
        dtype = X.dtypes.iloc[j]
        if column.integer:
            fills = fills.astype(np.int64)
        elif isinstance(dtype, np.dtype) and dtype.kind == "f":
            fills = fills.astype(dtype)        # a float32 column takes float32 fills (pandas 3 refuses a lossy set)
        if isinstance(dtype, pd.StringDtype) and not column.categorical:
            fills = np.array([str(v) for v in fills.tolist()], dtype=object)     # numbers held as text stay text
        values[rows] = fills
        out.isetitem(j, pd.Series(values, index=X.index, name=X.columns[j]))
    return out
