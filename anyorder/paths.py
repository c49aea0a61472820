"""Output paths checked before long work, so that a typo costs nothing and loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def _nearest_existing(path: Path) -> Path:
    for folder in [path, *path.parents]:
        if folder.exists():
            return folder
    return Path(".")


def output_file(path: str | Path, what: str, inputs: tuple = ()) -> Path:
    """`path` as a Path if a file can be written there: not a folder, not one of `inputs`,
    in an existing writable folder. `what` names the argument in the error."""
    path = Path(path).expanduser()
    if not str(path).strip():
        raise UserError(f"{what} is empty; name the file to write")
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; name a file to write")
    for given in inputs:
        if path.resolve() == Path(given).expanduser().resolve():
            raise UserError(f"{what} {path} is also the input; write to another file so the input is kept")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{what} {path} is not writable")
    return path


def output_folder(path: str | Path, what: str) -> Path:
    """`path` as a Path if a folder can be made (or written) there; nothing is created yet."""
    path = Path(path).expanduser()
    if not str(path).strip():
        raise UserError(f"{what} is empty; name the folder to write")
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; name a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"{what} {path} cannot be created: {existing} is not a writable folder")
    return path
