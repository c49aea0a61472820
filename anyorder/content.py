"""What a file holds as a model sees it, read and written in blocks so that compression
streams: a text model reads any file as its vocabulary's tokens (every byte for a byte
model, text8's 27 symbols for a text8 model), an image model a .npy array or a .png picture.

A `Content` is a flat stream of `length` values (rows of D consecutive values; a text's
last partial row holds what is left) that `blocks(size)` reads lazily; a `ContentWriter`
turns decoded blocks back into the file, byte for byte. Text and byte files never sit in
memory whole; .npy and .png files are images of bounded size and are read whole.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .data.text import vocabulary_of
from .errors import UserError
from .pictures import to_images

READ_BLOCK = 1 << 24                # bytes per read of the vocabulary check (16 MiB)
MODES = ("L", "RGB")                # PNG modes: grey, colour
NEWLINE = b"\n"


class CompressionError(UserError):
    """A file a model cannot code (one line, naming the file and what is wrong)."""


@dataclass
class Content:
    """`length` values of kind `kind` ("text": text8 tokens, "bytes": every byte, "npy",
    "png"), what it takes to write the file back (`layout`), and `blocks(size)`: an iterator
    of int64 arrays of `size` values each (the last one shorter), read on demand."""

    kind: str
    length: int
    layout: dict = field(default_factory=dict)
    blocks: Callable[[int], Iterator[np.ndarray]] = lambda size: iter(())


def content_kind(meta: dict) -> str:
    """The kind of content a model codes: "bytes" or "text" (text8) for text models, "image"."""
    if meta["kind"] == "text":
        return vocabulary_of(meta).name.replace("text8", "text")
    return meta["kind"]


# ---------------------------------------------------------------- text and bytes
def _text_content(path: Path, meta: dict, name: str) -> Content:
    """A file as its vocabulary's tokens, checked whole before any work (in READ_BLOCK reads:
    memory stays bounded) and then read block by block."""
    vocab = vocabulary_of(meta)
    size, seen, lines = path.stat().st_size, 0, 0
    if not vocab.every_byte:
        with path.open("rb") as f:
            while block := f.read(READ_BLOCK):
                at = vocab.outside(block)
                if at is not None:
                    line = lines + block.count(NEWLINE, 0, at) + 1
                    raise CompressionError(f"{name}: byte {block[at:at + 1]!r} at position {seen + at} (line "
                                       f"{line}) is outside this model's "
                                       f"vocabulary {meta['vocab']!r}; a text8 model codes only text made of "
                                       "it (a byte model, data.vocabulary=bytes, codes any file)")
                seen, lines = seen + len(block), lines + block.count(NEWLINE)

    def blocks(count: int) -> Iterator[np.ndarray]:
        read = 0
        with path.open("rb") as f:
            while block := f.read(min(count, size - read)):
                read += len(block)
                yield vocab.ids(block, name).astype(np.int64)
        if read != size:
            raise CompressionError(f"{name} changed while it was read ({read} bytes, {size} at the start)")

    kind = content_kind(meta)
    return Content(kind, size, {"length": size}, blocks)


# ---------------------------------------------------------------- images
def _image_shape(meta: dict) -> tuple[int, int, int]:
    return tuple(int(s) for s in meta["shape"])


def _pixel_levels(meta: dict) -> np.ndarray:
    """The 8-bit value of each level `[K]`, as `pictures.to_images` draws them."""
    levels = meta["num_classes"]
    return to_images(torch.arange(levels).view(1, -1), (1, 1, levels), levels).reshape(-1)


def _in_memory(kind: str, values: np.ndarray, layout: dict) -> Content:
    values = values.reshape(-1).astype(np.int64)
    return Content(kind, len(values), layout,
                   lambda size: (values[i:i + size] for i in range(0, len(values), size)))


def _read_npy(path: Path, meta: dict, name: str) -> Content:
    shape, dim, levels = _image_shape(meta), meta["dim"], meta["num_classes"]
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise CompressionError(f"cannot read {name} as a .npy array: {err}") from None
    fits = [shape, (dim,)] + ([shape[1:]] if shape[0] == 1 else [])
    if array.dtype.kind not in "iu":
        raise CompressionError(f"{name}: the array must hold integer levels, got dtype {array.dtype}")
    if not any(array.shape[len(array.shape) - len(f):] == f and len(array.shape) >= len(f) for f in fits):
        raise CompressionError(f"{name}: an array of shape {array.shape} does not end with the model's "
                           f"image shape {shape} or its {dim} variables")
    if array.size and (array.min() < 0 or array.max() >= levels):
        raise CompressionError(f"{name}: values must lie in 0..{levels - 1}, got {array.min()}..{array.max()}")
    return _in_memory("npy", array, {"dtype": array.dtype.str, "shape": tuple(array.shape)})


def _read_png(path: Path, meta: dict, name: str) -> Content:
    C, H, W = _image_shape(meta)
    mode = {1: MODES[0], 3: MODES[1]}.get(C)
    try:
        picture = Image.open(path)
        picture.load()
    except (OSError, ValueError) as err:
        raise CompressionError(f"cannot read {name} as a picture: {err}") from None
    if mode is None or picture.mode != mode or picture.size != (W, H):
        raise CompressionError(f"{name} is a {picture.width}x{picture.height} {picture.mode} picture; this "
                           f"model codes {W}x{H} pictures with {C} channel(s) (mode {mode or 'none'})")
    pixels = np.asarray(picture).reshape(H, W, C).transpose(2, 0, 1).reshape(-1)
    level_of = np.full(256, -1, np.int64)
    level_of[_pixel_levels(meta)] = np.arange(meta["num_classes"])
    levels = level_of[pixels]
    bad = np.flatnonzero(levels < 0)
    if len(bad):
        c, y, x = np.unravel_index(bad[0], (C, H, W))
        raise CompressionError(f"{name}: pixel value {pixels[bad[0]]} at row {y}, column {x} is not one "
                           f"of the model's {meta['num_classes']} levels {_pixel_levels(meta).tolist()}")
    return _in_memory("png", levels, {"mode": mode})


def read_content(path: str | Path, meta: dict) -> Content:
    """Any file (text models: as bytes or text8 tokens) or a .png / .npy image file (image
    models), checked now; its values are read when `blocks` is iterated."""
    path, name = Path(path), str(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise CompressionError(f"input {path} {what}; compress reads a regular file")
    if meta["kind"] == "text":
        return _text_content(path, meta, name)
    if meta["kind"] != "image":
        raise CompressionError(f"compress handles text and image models; this one models {meta['kind']} data")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise CompressionError(f"{name}: image models compress .png pictures or .npy arrays of levels, "
                           f"got a {suffix or 'suffix-less'} file")
    return (_read_npy if suffix == ".npy" else _read_png)(path, meta, name)


def content_length(kind: str, layout: dict, dim: int) -> int:
    """Values in a content of this kind and layout (a .png holds one row)."""
    if kind in ("text", "bytes"):
        return layout["length"]
    return int(np.prod(layout["shape"])) if kind == "npy" else dim


# ---------------------------------------------------------------- writing back
class ContentWriter:
    """Decoded blocks -> the file `read_content` read, written to `out`: tokens as bytes at
    once; image values at `finish` (an image file is written whole)."""

    def __init__(self, kind: str, layout: dict, meta: dict, out: BinaryIO):
        self.kind, self.layout, self.meta, self.out = kind, layout, meta, out
        self.vocab = vocabulary_of(meta) if kind in ("text", "bytes") else None
        self.held: list[np.ndarray] = []

    def write(self, values: np.ndarray) -> None:
        if self.vocab is not None:
            self.out.write(self.vocab.to_bytes(values))
        else:
            self.held.append(values)

    def finish(self) -> None:
        if self.vocab is not None:
            return
        values = np.concatenate([np.zeros(0, np.int64), *self.held])
        if self.kind == "npy":
            np.save(self.out, values.astype(self.layout["dtype"]).reshape(self.layout["shape"]))
            return
        C, H, W = _image_shape(self.meta)
        pixels = _pixel_levels(self.meta)[values].reshape(C, H, W).transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if C == 1 else pixels, self.layout["mode"]).save(buffer, "PNG")
        self.out.write(buffer.getvalue())
