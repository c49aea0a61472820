"""Text as a stream of tokens in one of two vocabularies (`data.vocabulary`).

text8 (the default, the paper's protocol): 27 symbols, space = 0, a..z = 1..26; sources are
cleaned the way text8 was made (lowercase, digits spelled out, all else a space).
bytes: the 256 byte values, nothing cleaned: every character of any file (UTF-8, line
breaks, binary) is kept, so a model can give back exactly the text it was shown.

Sources: the Shakespeare plays shipped inside the package (cleaned for text8, their raw
text for bytes), Mahoney's text8, or any file / folder of files. A source is one token
stream, split by position into train / valid / test; training batches are random crops of
the train stream, valid and test are fixed non-overlapping chunks.
"""

from __future__ import annotations

import lzma
import shutil
import urllib.request
import zipfile
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import files, memory
from ..arguments import count, probability
from ..errors import UserError
from ..paths import output_file
from .base import DataError, DataIO, Dataset, cache_dir

VOCAB = " abcdefghijklmnopqrstuvwxyz"
SOURCES = ("shakespeare", "text8", "file")
VOCABULARIES = ("text8", "bytes")
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_SPLIT = (0.9, 0.05, 0.05)     # 90M / 5M / 5M of text8's 100M characters

_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()

# byte -> cleaned byte: letters lowercased, digits kept (spelled out next), all else space
_CLEAN_TABLE = bytearray(b" " * 256)
for _c in range(26):
    _CLEAN_TABLE[ord("a") + _c] = _CLEAN_TABLE[ord("A") + _c] = ord("a") + _c
for _d in b"0123456789":
    _CLEAN_TABLE[_d] = _d
_CLEAN_TABLE = bytes(_CLEAN_TABLE)

# byte -> token id; 255 marks a byte outside the vocabulary
_IDS = np.full(256, 255, dtype=np.uint8)
_IDS[np.frombuffer(VOCAB.encode(), np.uint8)] = np.arange(len(VOCAB), dtype=np.uint8)


def _clean_bytes(raw: bytes, keep: bytes = b"") -> bytes:
    """text8 cleaning on bytes, like wikifil.pl: every non-ASCII byte becomes a space; the
    bytes in `keep` are kept as they are (e.g. the "_" of a prompt's holes)."""
    table = _CLEAN_TABLE
    if keep:
        table = bytearray(table)
        for byte in keep:
            table[byte] = byte
        table = bytes(table)
    text = raw.translate(table)
    for digit, word in zip(b"0123456789", _DIGIT_WORDS):
        text = text.replace(bytes([digit]), f" {word} ".encode())
    chars = np.frombuffer(text, np.uint8)
    space = chars == ord(" ")
    keep = np.ones(len(chars), bool)
    keep[1:] = ~(space[1:] & space[:-1])
    return chars[keep].tobytes().strip(b" ")


def clean_text(raw: str, keep: str = "") -> str:
    """Lowercase, digits spelled out (" zero " … " nine "), every other character a space,
    runs of spaces collapsed, ends stripped: text8's cleaning (Mahoney's wikifil.pl).
    Characters in `keep` (ASCII) survive unchanged.

    Vectorised over bytes (a translate table and numpy), about a second per 100 MB.
    """
    if not isinstance(raw, str) or not isinstance(keep, str):
        raise UserError(f"clean_text takes str (decode bytes first), got {type(raw).__name__}"
                        f"{'' if isinstance(keep, str) else ' and keep ' + type(keep).__name__}")
    return _clean_bytes(raw.encode("utf-8", "replace"), keep.encode("ascii")).decode("ascii")


def _ids(text: bytes, name: str) -> np.ndarray:
    """Token ids `[N]` uint8 of already-clean text; DataError naming `name` otherwise."""
    ids = _IDS[np.frombuffer(text, np.uint8)]
    bad = np.flatnonzero(ids == 255)
    if len(bad):
        char = text[bad[0]:bad[0] + 1]
        raise DataError(f"{name}: character {char!r} at position {bad[0]} is outside the "
                        f"vocabulary {VOCAB!r}; clean the text first (anyorder.data.text.clean_text)")
    return ids


def encode(text: str) -> torch.Tensor:
    """Clean text -> token ids `[len(text)]` int64 (space = 0, a = 1 … z = 26)."""
    if not isinstance(text, str):
        raise UserError(f"encode takes str, got {type(text).__name__}")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as err:
        raise DataError(f"encode: non-ASCII character {text[err.start]!r} at position {err.start}; "
                        "clean the text first (clean_text)") from None
    return torch.from_numpy(_ids(raw, "encode").astype(np.int64))


def decode(ids: torch.Tensor) -> str | list:
    """Token ids `[L]` -> str; `[B, L]` -> list of B strings (nested lists for more dims)."""
    ids = torch.as_tensor(ids)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise UserError(f"decode: ids must be integers, got {ids.dtype}")
    if ids.dim() > 1:
        return [decode(row) for row in ids]
    if ids.numel() and (ids.min() < 0 or ids.max() >= len(VOCAB)):
        raise UserError(f"decode: ids must lie in 0..{len(VOCAB) - 1}, got {ids.min()}..{ids.max()}")
    return "".join(VOCAB[i] for i in ids.tolist())


class Vocabulary:
    """How a text model's tokens stand for bytes: `size` token values, `clean` (what a
    training source goes through first), `ids` (bytes -> tokens `[N]` uint8, a DataError
    naming the first byte it cannot represent) and `to_bytes` (tokens -> bytes).
    `vocabulary_of(meta)` gives a checkpoint's."""

    name: str
    size: int
    described: str
    every_byte: bool = False            # True: any file is a stream of tokens as it is

    def clean(self, raw: bytes, keep: bytes = b"") -> bytes:
        raise NotImplementedError

    def outside(self, raw: bytes) -> int | None:
        """Position of the first byte of `raw` that is no token, or None."""
        raise NotImplementedError

    def ids(self, raw: bytes, name: str) -> np.ndarray:
        raise NotImplementedError

    def to_bytes(self, ids) -> bytes:
        raise NotImplementedError


class Text8(Vocabulary):
    """text8's 27 symbols; sources cleaned with `clean_text`'s rules."""

    name, size = "text8", len(VOCAB)
    described = ("text8's cleaning: lowercase a-z and space only, digits spelled out, every other "
                 "character a space (data.vocabulary=bytes keeps every byte)")
    _chars = np.frombuffer(VOCAB.encode("ascii"), np.uint8)

    def clean(self, raw, keep=b""):
        return _clean_bytes(raw, keep)

    def outside(self, raw):
        bad = np.flatnonzero(_IDS[np.frombuffer(raw, np.uint8)] == 255)
        return int(bad[0]) if len(bad) else None

    def ids(self, raw, name):
        return _ids(raw, name)

    def to_bytes(self, ids):
        return self._chars[np.asarray(ids, np.int64)].tobytes()


class Bytes(Vocabulary):
    """The 256 byte values as they are: token = byte."""

    name, size, every_byte = "bytes", 256, True
    described = "raw bytes: 256 values, nothing cleaned (every character and line break kept)"

    def clean(self, raw, keep=b""):
        return raw

    def outside(self, raw):
        return None

    def ids(self, raw, name):
        return np.frombuffer(raw, np.uint8)

    def to_bytes(self, ids):
        return np.asarray(ids, np.int64).astype(np.uint8).tobytes()


def vocabulary_of(meta_or_name: dict | str) -> Vocabulary:
    """The vocabulary of a text checkpoint's data description (`meta["vocabulary"]`; text8
    when absent, as in every checkpoint older than the byte vocabulary) or of its name."""
    name = meta_or_name.get("vocabulary", "text8") if isinstance(meta_or_name, dict) else meta_or_name
    if name not in VOCABULARIES:
        raise DataError(f"data.vocabulary must be one of {', '.join(VOCABULARIES)}, got {name!r}")
    return Bytes() if name == "bytes" else Text8()


def _fetch_text8() -> Path:
    """text8.zip (or the extracted text8) from the cache dir, downloading it if absent."""
    folder = cache_dir()
    for name in ("text8.zip", "text8"):
        if (folder / name).is_file():
            return folder / name
    target, partial_file = folder / "text8.zip", folder / "text8.zip.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(TEXT8_URL, timeout=10) as response, open(partial_file, "wb") as out:
            shutil.copyfileobj(response, out)
        partial_file.replace(target)
    except OSError as err:      # URLError, timeouts and disk errors are all OSErrors
        partial_file.unlink(missing_ok=True)
        raise DataError(f"text8.zip is not in {folder} and downloading {TEXT8_URL} failed ({err}); "
                        f"put text8.zip there (or set $ANYORDER_CACHE) or pass its path") from None
    return target


def _read_text8(path: Path) -> bytes:
    """The bytes of text8 from text8.zip or the extracted file (already clean)."""
    if not path.is_file():
        raise DataError(f"no such text8 file: {path} (expected text8.zip or the extracted text8)")
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip":
            raise DataError(f"{path} is not a readable zip file")
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "text8" not in names and len(names) != 1:
                raise DataError(f"{path} holds {len(names)} files and none is named 'text8'")
            return archive.read("text8" if "text8" in names else names[0])
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path} is not a readable zip file ({err})") from None


def _folder_files(path: Path, pattern: str) -> list[Path]:
    """The files under `path` matching `pattern`, recursively, in sorted order of their path
    inside it; hidden files and folders (a name starting with ".", such as .git) are skipped."""
    files = [f for f in path.rglob(pattern)
             if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)]
    return sorted(files, key=lambda f: f.relative_to(path).parts)


def _read_plain(path: Path, vocab: Vocabulary) -> bytes:
    """A file, or a folder's files (every file for bytes, *.txt for text8; recursively)
    joined by newlines, through the vocabulary's cleaning."""
    pattern = "*" if vocab.name == "bytes" else "*.txt"
    if path.is_dir():
        files = _folder_files(path, pattern)
        if not files:
            raise DataError(f"no {'files' if pattern == '*' else '*.txt files'} in folder {path} "
                            "(hidden files and folders are skipped)")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"no such text file or folder: {path} "
                        f"(source must be one of {', '.join(SOURCES)} or a path)")
    parts = []
    for f in files:
        try:
            raw = f.read_bytes()
        except OSError as err:
            raise DataError(f"cannot read {f}: {err.strerror or err}") from None
        parts.append(raw if vocab.name == "bytes" else _check_text(raw, f))
    return vocab.clean(b"\n".join(parts))


def shakespeare_plays() -> bytes:
    """The raw text of the nine plays shipped with the package (see SHAKESPEARE-NOTICE.txt),
    joined by newlines: the text8-cleaned corpus is exactly `clean_text` of these bytes."""
    return lzma.decompress((resources.files(__package__) / "corpus" / "shakespeare-plays.txt.xz").read_bytes())


def _check_text(raw: bytes, path: Path) -> bytes:
    """`raw` unchanged if it reads as text: binary files (NUL bytes, or more than 1% control
    characters other than tab, newline, form feed and carriage return in the first MB) are refused."""
    head = np.frombuffer(raw[: 1 << 20], np.uint8)
    control = ((head < 32) & ~np.isin(head, [9, 10, 12, 13])) | (head == 127)
    if len(head) and ((head == 0).any() or control.mean() > 0.01):
        raise DataError(f"{path} looks like a binary file, not text ({control.mean():.0%} control bytes "
                        "in its first MB)")
    return raw


def _fractions(split_fractions) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(f) for f in split_fractions)
    except (TypeError, ValueError):
        fractions = ()
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] == 0 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split_fractions must be three non-negative numbers (train > 0) summing "
                        f"to 1, got {split_fractions!r}")
    return fractions


def _check_length(stream: torch.Tensor, seq_len: int, name: str, split: str) -> None:
    if len(stream) < seq_len:
        raise DataError(f"{name}: the {split} split has {len(stream)} characters, fewer than "
                        f"seq_len={seq_len}; use more text, a shorter seq_len or other split_fractions")


def _chunks(stream: torch.Tensor, seq_len: int, name: str, split: str) -> torch.Tensor:
    """Non-overlapping chunks `[N, seq_len]` int64 of a split; the remainder is dropped."""
    _check_length(stream, seq_len, name, split)
    n = len(stream) // seq_len
    return stream[: n * seq_len].long().view(n, seq_len)


def _random_crops(stream: torch.Tensor, batch_size: int, generator: torch.Generator,
                  seq_len: int) -> torch.Tensor:
    """`[batch_size, seq_len]` int64 crops at uniform random offsets of the train stream."""
    starts = torch.randint(len(stream) - seq_len + 1, (batch_size,), generator=generator,
                           device=generator.device)
    return stream.unfold(0, seq_len, 1)[starts.to(stream.device)].long()


def load_text(source: str | Path = "shakespeare", path: str | Path | None = None, seq_len: int = 250,
              train_crop: int | None = None,
              split_fractions: tuple[float, float, float] = TEXT8_SPLIT,
              vocabulary: str = "text8") -> Dataset:
    """A text Dataset (kind "text", D = seq_len, 27 classes for text8, 256 for bytes).

    source: "shakespeare" (the plays inside the package: text8-cleaned, or their raw text
    for bytes), "text8" (text8.zip or the extracted text8 at `path`; without `path`, from
    the cache dir or downloaded), "file" (a file, or a folder searched recursively: its
    *.txt files for text8, every file for bytes; hidden ones skipped), or a path itself.
    vocabulary: "text8" cleans the text to 27 symbols (the paper's protocol); "bytes"
    keeps every byte. `Dataset.note` says which, in words, for the user.
    The stream is split by position with `split_fractions` (train, valid, test); the
    default is text8's standard split, exactly 90M / 5M / 5M characters on text8 itself.
    A zero valid or test fraction leaves that split out. train_crop keeps only the first
    train_crop characters of the train split (smaller-data runs).

    The train stream is stored as uint8 (8× smaller for text8; batches come out int64).
    """
    if not isinstance(seq_len, int) or seq_len < 1:
        raise DataError(f"seq_len must be a positive integer, got {seq_len!r}")
    if train_crop is not None and (not isinstance(train_crop, int) or train_crop < 1):
        raise DataError(f"train_crop must be a positive integer or None, got {train_crop!r}")
    fractions = _fractions(split_fractions)
    vocab = vocabulary_of(vocabulary)
    if source == "shakespeare":
        text = (shakespeare_plays() if vocab.name == "bytes" else
                (resources.files(__package__) / "corpus" / "shakespeare.txt").read_bytes())
    elif source == "text8":
        text = _read_text8(Path(path) if path is not None else _fetch_text8())     # already clean
    else:
        if source != "file":
            if path is not None:
                raise DataError(f"unknown text source {source!r}; use one of {', '.join(SOURCES)} "
                                "or give the path as source")
            source, path = "file", source
        if path is None:
            raise DataError("source='file' needs path= (a text file or a folder of *.txt files)")
        text = _read_plain(Path(path), vocab)
    name = f"{source} text" if path is None else str(path)
    stream = torch.from_numpy(vocab.ids(text, name).copy())
    if vocab.name == "text8" and not stream.any():
        raise DataError(f"{name}: no letters or digits left after cleaning (text8 keeps only a-z "
                        "and spelled-out digits)")

    n = len(stream)
    train_end, valid_end = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
    train = stream[:train_end] if train_crop is None else stream[:min(train_end, train_crop)]
    _check_length(train, seq_len, name, "train")
    parts = {"valid": (stream[train_end:valid_end], fractions[1]), "test": (stream[valid_end:], fractions[2])}
    splits = {split: _chunks(part, seq_len, name, split) for split, (part, f) in parts.items() if f > 0}
    meta = ({"source": source, "vocabulary": "bytes", "seq_len": seq_len} if vocab.name == "bytes" else
            {"source": source, "vocab": VOCAB, "seq_len": seq_len})     # text8: as before bytes existed
    note = f"data: {name}, {n} {'bytes' if vocab.name == 'bytes' else 'characters'} as {vocab.described}"
    return Dataset(kind="text", dim=seq_len, num_classes=vocab.size, train=train.clone(),
                   splits=splits, meta=meta, batch_fn=partial(_random_crops, seq_len=seq_len), note=note)


class TextIO(DataIO):
    """`anyorder sample` for text: infill a prompt (`anyorder.infill`: every byte outside the
    holes comes back as it was), random holes in test rows, or free text."""

    kind = "text"
    variable = "character"
    sample_options = (
        (("--text",), {"help": "text models: a prompt with _ for each missing byte (--hole-marker to mark "
                               "them otherwise); a text8 model cleans it first, a byte model keeps every byte"}),
        (("--text-file",), {"metavar": "FILE", "help": "text models: read the prompt from FILE (any bytes, "
                                                       "several lines)"}),
        (("--hole-marker",), {"metavar": "M", "help": "text models: the marker of a missing byte in the prompt "
                                                      "(default _)"}),
        (("--holes",), {"metavar": "SPANS", "help": "text models: missing bytes given as spans START:END "
                                                    "(END excluded), e.g. 3:5,10:12; the prompt is then taken as it is"}),
        (("--continue",), {"type": count(0), "metavar": "N", "dest": "continue_",
                           "help": "text models: also draw N bytes after the prompt (default 0: only the holes)"}),
        (("--output",), {"metavar": "FILE", "help": "text models: also write each fill, raw bytes, to FILE "
                                                    "(FILE.1, FILE.2, … before the suffix with --num > 1)"}),
        (("--random-mask",), {"type": probability, "metavar": "P",
                              "help": "hide each character of test rows with probability P (text models)"}),
    )

    def variable_name(self, meta):
        return "byte" if vocabulary_of(meta).every_byte else self.variable

    def check_sample_args(self, args):
        prompt = args.text is not None or args.text_file is not None
        if args.text is not None and args.text_file is not None:
            raise UserError("give the prompt with --text or with --text-file, not both")
        if (args.hole_marker is not None or args.holes is not None) and not prompt:
            raise UserError("--hole-marker and --holes mark the holes of a prompt: give --text or --text-file")
        if args.hole_marker is not None and args.holes is not None:
            raise UserError("mark the holes with --hole-marker or give them as --holes spans, not both")
        if args.random_mask is not None and (prompt or args.continue_):
            raise UserError("--random-mask hides bytes of test rows; it takes no prompt or --continue")
        if args.output is not None:
            output_file(args.output, "--output")          # a folder, not the folder of path.1, path.2, …
            args.outputs = [output_file(path, "--output", (args.text_file,) if args.text_file else ())
                            for path in _numbered(Path(args.output), args.num)]

    def sample(self, args, meta, rows, generator, fill):
        if args.text is None and args.text_file is None and not args.continue_:
            return super().sample(args, meta, rows, generator, fill)
        from ..infill import as_bytes, fill_windows, parse_spans, prompt_holes, prompt_tokens
        vocab = vocabulary_of(meta)
        raw = as_bytes(args.text) if args.text is not None else b""
        if args.text_file is not None:
            try:
                raw = Path(args.text_file).read_bytes()
            except OSError as err:
                raise UserError(f"--text-file {args.text_file}: {err.strerror or err}") from None
        marker = None if args.hole_marker is None else as_bytes(args.hole_marker)
        spans = None if args.holes is None else parse_spans(args.holes)
        prompt, holes = prompt_holes(raw, vocab, marker, spans)
        shown = _shown(prompt, holes, marker or HOLE.encode())
        if not vocab.every_byte and shown.encode("utf-8") != raw:
            print(f"prompt:   {shown} (cleaned like the training text)")
        # The prompt's bytes and the fills are held whole (values, holes, fills: 17 bytes a byte).
        memory.check_fits(args.num * (len(prompt) + (args.continue_ or 0)) * 17, "the prompt, --continue and --num")
        tokens, holes = prompt_tokens(prompt, holes, vocab, args.continue_ or 0)
        filled = fill_windows(tokens, holes, meta["dim"], args.num, fill, progress=not args.quiet)
        for i, row in enumerate(filled):
            data = vocab.to_bytes(row)
            print(f"filled:   {data.decode('utf-8', 'replace')}")
            if args.output is not None:
                files.write_atomic(args.outputs[i], lambda f: f.write(data))
        if args.output is not None:
            print(f"wrote {', '.join(map(str, args.outputs))}")

    def sample_queries(self, args, meta, rows, generator):
        if args.random_mask is not None:
            x = rows()
            return x, torch.rand(x.shape, generator=generator) >= args.random_mask
        x = torch.zeros(args.num, meta["dim"], dtype=torch.long)
        return x, torch.zeros_like(x, dtype=torch.bool)

    def show_samples(self, args, meta, x, observed, filled):
        vocab = vocabulary_of(meta)
        for i in range(len(filled)):
            if observed.any():
                print(f"original: {vocab.to_bytes(x[i]).decode('utf-8', 'replace')}")
                print(f"masked:   {_shown(vocab.to_bytes(x[i]), ~observed[i].numpy(), HOLE.encode())}")
            text = vocab.to_bytes(filled[i]).decode("utf-8", "replace")
            print(f"filled:   {text}" if observed.any() else text)
            print()


HOLE = "_"


def _shown(data: bytes, holes, marker: bytes) -> str:
    """`data` with `marker` at its holes, for printing (invalid UTF-8 as replacement characters)."""
    out, previous = bytearray(), 0
    for at in np.flatnonzero(holes):
        out += data[previous:at] + marker
        previous = at + 1
    return bytes(out + data[previous:]).decode("utf-8", "replace")


def _numbered(path: Path, num: int) -> list[Path]:
    """`path` for one fill; path.1.suffix, path.2.suffix, … for several (a path without a
    name, "" or a folder's, as it is: `output_file` refuses it)."""
    return [path] if num == 1 or not path.name else [path.with_name(f"{path.stem}.{i}{path.suffix}") for i in range(1, num + 1)]
