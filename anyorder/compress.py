"""Lossless compression with an AO-ARM's exact conditionals along its protocol path.

An exact likelihood is a code length: walking the path of the query x_e and coding each
variable with p(x_{e(t)} | x_{e(<t)}) in a range coder costs −log2 p(x_e) bits plus a few
bytes. A file becomes rows of D values (`anyorder.content`: every byte for a byte model),
its last partial row of r values the marginal query on its first r positions (nothing
padded); images are whole rows. A step policy (K steps, each coding several variables from
one node) trades size for K passes per row instead of D.

It streams: a batch of rows is read, modelled, coded and written before the next is read,
each batch its own range-coder chunk, so memory does not grow with the file.

Decoding must see bit for bit the probabilities the encoder saw. So (1) probabilities are
quantised to integers summing to 2**PRECISION before they reach the coder, and (2) the
decoder repeats the encoder's computations exactly: the same batches of rows, the same
passes (one per path step, the decoder cannot do otherwise), the same torch thread
count and the same precision — convolution outputs change in their last bits with the batch
size. The header records batch size, thread count, precision and device kind; a checksum of
the original data, checked after decoding, catches anything left (another torch build or CPU
kind).

The network computes in bf16 where the hardware multiplies bf16 natively (`precision="auto"`):
a walk of one variable per step is bound by reading its key/value cache and by small
products, and bf16 halves the one and speeds up the other; the code grows by a few
thousandths of a bit per variable (the probabilities are quantised anyway).

File layout, format version 4 (little-endian; about 30 bytes, and 5 per batch, besides
the code): MAGIC, format version, model fingerprint, environment fingerprint, device and
content kinds; varints: threads, batch size, precision (0 fp32, 1 bf16), the step policy,
the content's layout (text, bytes: length; npy: dtype and shape; png: mode); then per batch
of rows a varint count of 32-bit range-coder words and the words; then a CRC-32 of the
data's values and a CRC-32 of everything before it. Version 4 adds the precision to version
3's layout, and its path networks attend over whole cache blocks; versions 1–3 are refused
with a message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from . import budget, lattice
from .content import (MODES, CompressionError, Content, ContentWriter, content_kind, content_length,
                      read_content)
from .files import write_atomic
from .model import AnyOrderModel
from .precision import bf16_native

MAGIC, FORMAT_VERSION = b"AOZ", 4
OLDER_FORMATS = {1: "whole files in memory, before streaming",
                 2: "path networks walked with other cache-step arithmetic, so its last bits may differ",
                 3: "always fp32, path networks attending over cache slices, so its last bits may differ"}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}   # the order is the header's code
PRECISION = 24                      # quantised probabilities are integers summing to 2**24
KINDS = ("text", "npy", "png", "bytes")      # what a compressed file holds ("text": text8 tokens)
DEVICES = ("cpu", "cuda", "mps")
_HEAD = struct.Struct("<3sB8s4sB")       # magic, version, model, environment, device << 4 | kind
_TRAILER = struct.Struct("<II")          # CRC-32 of the data's values, CRC-32 of the file before it
_READ = 1 << 20                          # bytes per read when checking a compressed file's CRC


# ---------------------------------------------------------------- the path and its coder
def path_conditionals(model: AnyOrderModel, x: torch.Tensor, target: torch.Tensor,
                      policy: list[int] | None = None):
    """The conditionals of the next variables along the protocol's path from ∅ to `target`:
    the model's walk, `AnyOrderModel.conditionals` (node and path networks alike).

    Yields, step by step, (rows `[M]`, var `[M]`, params `[M, P]`). Without a policy every
    step visits one variable: the exact likelihood. A policy (step boundaries 0 = b_0 < … <
    b_K = D, rescaled to a shorter row's length) visits a block of variables per step: K
    network passes (or key/value cache steps), and the K-step process's likelihood. x `[B, D]`
    is read afresh at each step, so a decoder writes x[rows, var] before asking for the next
    step; only visited variables are ever seen by the network.
    """
    return model.conditionals(x, target, policy=policy)


def uniform_policy(dim: int, steps: int) -> list[int]:
    """Step boundaries `[K + 1]` of K near-equal steps along a path of D variables (at most D
    steps): `budget.even_policy`, the policy `sample(..., steps=K)` follows."""
    if steps < 1:
        raise CompressionError(f"steps must be a positive integer, got {steps}")
    return budget.even_policy(dim, min(steps, dim)).tolist()


def fixed_point(logits: torch.Tensor) -> np.ndarray:
    """Categorical logits `[R, K]` -> integer frequencies `[R, K]` (as float64, the coder's
    input type), each >= 1 and summing to 2**PRECISION; the remainder of the flooring goes to
    the likeliest value. Integers make the coder's model a function of exact numbers."""
    probs = torch.softmax(logits.detach().double().cpu(), -1)
    total = float(1 << PRECISION)
    freq = (probs * (total - probs.shape[-1])).floor() + 1
    freq.scatter_add_(-1, freq.argmax(-1, keepdim=True), total - freq.sum(-1, keepdim=True))
    return freq.numpy()


def _constriction():
    try:
        import constriction
    except ImportError:
        raise CompressionError("compress and decompress need the constriction package: "
                               "pip install 'anyorder[compress]' (or pip install constriction)") from None
    return constriction


def _walk(model: AnyOrderModel, x: torch.Tensor, lengths: torch.Tensor, policy: list[int] | None, code,
          bar) -> None:
    """Run `path_conditionals` over one batch of rows x `[N, D]`, coding the first `lengths [N]`
    variables of each: `code(x, rows, var, frequencies)` at every step (a decoder writes the
    values it decodes into x there)."""
    target = torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(-1)
    for rows, var, params in path_conditionals(model, x, target, policy):
        code(x, rows, var, fixed_point(params))
        bar.update(len(rows))


def _rows(values: np.ndarray, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A block of values -> rows x `[N, D]` (the last one zero-filled: never seen, never coded)
    and the values each row codes `[N]`."""
    count = -(-len(values) // dim)
    x = np.zeros((count, dim), np.int64)
    x.reshape(-1)[:len(values)] = values
    lengths = np.minimum(dim, len(values) - dim * np.arange(count))
    return torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device)


def coding_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16" for `precision` "auto" (bf16 where `device` multiplies it natively,
    `precision.bf16_native`), "bf16" or "fp32"."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if precision not in PRECISIONS:
        raise CompressionError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision


def _coding_model(model: AnyOrderModel, precision: str) -> AnyOrderModel:
    """The model whose walk codes: `model` itself in fp32, else a copy with its network cast to
    `precision` (weights rounded to nearest, so encoder and decoder cast the same weights)."""
    if precision == "fp32":
        return model
    coder = copy.deepcopy(model)
    coder.network.to(PRECISIONS[precision])
    return coder


@contextmanager
def _threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- fingerprints
def model_fingerprint(model: AnyOrderModel, config, meta: dict) -> bytes:
    """8 bytes of SHA-256 over the network config, the protocol, the data description and
    every tensor of the state dict: what decides the probabilities along the path."""
    described = {"net": config.net, "protocol": model.protocol, "meta": meta}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()[:8]


def _environment(device: torch.device) -> bytes:
    """4 bytes naming what else can move the network's last bits: the torch and coder
    versions and the kind of processor."""
    _constriction()
    chips = torch.backends.cpu.get_cpu_capability()      # the CPU quantises the probabilities
    if device.type == "cuda":
        chips += f", {torch.cuda.get_device_name(device)}"
    name = f"torch {torch.__version__}; constriction {metadata.version('constriction')}; {device.type}: {chips}"
    return hashlib.sha256(name.encode()).digest()[:4]


def _check_model(model: AnyOrderModel, meta: dict, policy: list[int] | None = None) -> None:
    """Refuse, before any work, a model that cannot code: continuous, a random protocol, in
    training mode, or one whose walk `path_conditionals` cannot take (asked on zero rows)."""
    if not meta.get("num_classes") or meta["num_classes"] > 256:
        raise CompressionError("compress codes categorical data of at most 256 values (text, bytes, "
                               "images); this model's variables are not")
    if lattice.parse_name(model.protocol, lattice.PROTOCOLS, "protocol")[0] == "random":
        raise CompressionError("compress needs a deterministic protocol (natural or strided(S)); "
                               "this model walks a fresh random order on every call")
    if model.training:
        raise CompressionError("the model is in training mode; call model.eval() first "
                               "(dropout would make the probabilities irreproducible)")
    empty = torch.zeros(0, meta["dim"], dtype=torch.long, device=model.device)
    next(path_conditionals(model, empty, empty.bool(), policy), None)



# ---------------------------------------------------------------- the header
@dataclass
class _Header:
    model: bytes
    environment: bytes
    device: str
    threads: int
    batch_size: int
    kind: str
    layout: dict
    policy: list[int] | None = None
    precision: str = "fp32"

    def pack(self) -> bytes:
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, self.model, self.environment,
                          DEVICES.index(self.device) << 4 | KINDS.index(self.kind))
        policy = self.policy or []
        head += _varints(self.threads, self.batch_size, list(PRECISIONS).index(self.precision), len(policy), *policy)
        if self.kind in ("text", "bytes"):
            return head + _varints(self.layout["length"])
        if self.kind == "png":
            return head + _varints(MODES.index(self.layout["mode"]))
        dtype, shape = self.layout["dtype"].encode("ascii"), self.layout["shape"]
        return head + _varints(len(dtype)) + dtype + _varints(len(shape), *shape)

    @classmethod
    def read(cls, f: BinaryIO, name: str) -> "_Header":
        """The header at the start of `f` (left just after it); one-line errors for foreign,
        older, newer and damaged files. The file's checksum is `_check_crc`'s job."""
        fixed = f.read(_HEAD.size)
        if not fixed or fixed[:len(MAGIC)] != MAGIC[:len(fixed)]:
            raise CompressionError(f"{name} is not a file written by anyorder compress")
        if len(fixed) < _HEAD.size:
            raise CompressionError(f"{name} is truncated ({len(fixed)} bytes, shorter than a header)")
        _, version, model, environment, device_kind = _HEAD.unpack(fixed)
        if version in OLDER_FORMATS:
            raise CompressionError(f"{name} uses compressed format version {version} ({OLDER_FORMATS[version]}); "
                                   f"this anyorder reads version {FORMAT_VERSION}: decompress it with the "
                                   "anyorder that wrote it")
        if version != FORMAT_VERSION:
            raise CompressionError(f"{name} uses compressed format version {version}; this anyorder "
                                   f"reads version {FORMAT_VERSION}")
        try:
            header = cls(model, environment, DEVICES[device_kind >> 4], _read_varint(f), _read_varint(f),
                         KINDS[device_kind & 15], {})
            header.precision = list(PRECISIONS)[_read_varint(f)]
            header.policy = [_read_varint(f) for _ in range(_read_varint(f))] or None
            if header.kind in ("text", "bytes"):
                header.layout["length"] = _read_varint(f)
            elif header.kind == "png":
                header.layout["mode"] = MODES[_read_varint(f)]
            else:
                dtype = f.read(_read_varint(f)).decode("ascii")
                shape = tuple(_read_varint(f) for _ in range(_read_varint(f)))
                header.layout.update(dtype=np.dtype(dtype).str, shape=shape)
        except (IndexError, EOFError, TypeError, ValueError, UnicodeDecodeError):
            raise CompressionError(f"{name} has a damaged header") from None
        if header.threads < 1 or header.batch_size < 1:
            raise CompressionError(f"{name} has a damaged header")
        return header


def _varints(*numbers: int) -> bytes:
    """LEB128: 7 bits per byte, high bit set while more bytes follow."""
    out = bytearray()
    for n in numbers:
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out)


def _read_varint(f: BinaryIO) -> int:
    value = shift = 0
    while shift < 64:
        byte = f.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError("varint too long")


def _check_crc(f: BinaryIO, name: str) -> None:
    """Refuse a damaged or truncated compressed file before any work: its last 4 bytes must be
    the CRC-32 of the rest (read in _READ blocks; `f` is left at its start)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if size < _HEAD.size + _TRAILER.size:
        _Header.read(f, name)           # a foreign file is named as such
        raise CompressionError(f"{name} is truncated ({size} bytes, shorter than a header)")
    crc, left = 0, size - 4
    while left:
        block = f.read(min(_READ, left))
        crc, left = zlib.crc32(block, crc), left - len(block)
    if crc != int.from_bytes(f.read(4), "little"):
        f.seek(0)
        _Header.read(f, name)           # a foreign or older file is named as such
        raise CompressionError(f"{name} is corrupted or truncated (its checksum does not match)")
    f.seek(0)


def recorded_device(path: str | Path) -> str:
    """The kind of device ("cpu", "cuda", "mps") a compressed file was written on, which is
    where it must be decompressed."""
    path = Path(path)
    if not path.is_file():
        raise CompressionError(f"no such compressed file: {path}")
    with path.open("rb") as f:
        return _Header.read(f, str(path)).device


def _valid_policy(policy: list[int] | None, dim: int) -> bool:
    return policy is None or (len(policy) >= 2 and policy[0] == 0 and policy[-1] == dim
                              and all(a < b for a, b in zip(policy, policy[1:])))


# ---------------------------------------------------------------- compress / decompress streams
def compress(model: AnyOrderModel, fingerprint: bytes, content: Content, out: BinaryIO, batch_size: int = 128,
             threads: int | None = None, progress: bool = False, policy: list[int] | None = None,
             precision: str = "auto") -> int:
    """Write the compressed file for `content` to `out`: header, one range-coder chunk per
    batch of `batch_size` rows (read, modelled, coded and written one after another), then
    the data's CRC and the file's. `threads` (default: torch's current count), `batch_size`,
    the step `policy` (see `path_conditionals`; default one variable per step, the exact
    likelihood) and the network's `precision` (`coding_precision`) are recorded; decoding
    repeats them. Returns the bytes of range-coder words."""
    constriction = _constriction()
    dim = model.dim
    if not _valid_policy(policy, dim):
        raise CompressionError(f"a step policy runs 0 = b_0 < b_1 < … < b_K = {dim}, got {policy}")
    if batch_size < 1 or batch_size >= 1 << 32:
        raise CompressionError(f"batch_size must be a positive integer, got {batch_size}")
    threads = threads or torch.get_num_threads()
    if not 1 <= threads < 1 << 16:
        raise CompressionError(f"threads must lie in 1..65535, got {threads}")
    device = model.device
    precision = coding_precision(precision, device)
    header = _Header(fingerprint, _environment(device), device.type, threads, batch_size, content.kind,
                     content.layout, policy, precision).pack()
    model = _coding_model(model, precision)
    family = constriction.stream.model.Categorical(perfect=False)
    file_crc, data_crc, words = zlib.crc32(header), 0, 0
    out.write(header)
    with _threads(threads), tqdm(total=content.length, desc="compress", unit="var", disable=not progress,
                                 dynamic_ncols=True) as bar:
        for values in content.blocks(batch_size * dim):
            encoder = constriction.stream.queue.RangeEncoder()

            def encode(x, rows, var, freqs):
                encoder.encode(x[rows, var].cpu().numpy().astype(np.int32), family, freqs)

            _walk(model, *_rows(values, dim, device), policy, encode, bar)
            coded = encoder.get_compressed().astype("<u4").tobytes()
            chunk = _varints(len(coded) // 4) + coded
            out.write(chunk)
            file_crc, data_crc = zlib.crc32(chunk, file_crc), zlib.crc32(values.astype(np.uint8), data_crc)
            words += len(coded)
    trailer = data_crc.to_bytes(4, "little")
    out.write(trailer + zlib.crc32(trailer, file_crc).to_bytes(4, "little"))
    return words


def decompress(model: AnyOrderModel, fingerprint: bytes, source: BinaryIO, meta: dict, writer_out: BinaryIO,
               name: str = "the input", progress: bool = False) -> int:
    """Decode the compressed file `source` (checked whole first) for a model of data `meta`,
    writing the original file to `writer_out` batch by batch with the batches, thread count
    and step policy its header names. Returns the number of values decoded."""
    constriction = _constriction()
    _check_crc(source, name)
    header = _Header.read(source, name)
    dim, wanted = meta["dim"], content_kind(meta)
    if header.kind != wanted and not (wanted == "image" and header.kind in ("npy", "png")):
        raise CompressionError(f"{name} holds {_KIND_WORDS[header.kind]}; this checkpoint codes "
                               f"{_KIND_WORDS[wanted]}: decompress it with the model that compressed it")
    if header.model != fingerprint:
        raise CompressionError(f"{name} was compressed with a different model (fingerprint "
                               f"{header.model.hex()}; this one is {fingerprint.hex()}): decompress it "
                               "with the model that compressed it")
    if not _valid_policy(header.policy, dim):
        raise CompressionError(f"{name} has a damaged header (its step policy does not fit {dim} variables)")
    device = model.device
    if header.device != device.type:
        raise CompressionError(f"{name} was compressed on {header.device} and must be decompressed on "
                               f"{header.device} too (--device {header.device}); this model is on {device.type}")
    length = content_length(header.kind, header.layout, dim)
    model = _coding_model(model, header.precision)
    writer = ContentWriter(header.kind, header.layout, meta, writer_out)
    family = constriction.stream.model.Categorical(perfect=False)
    data_crc, block = 0, header.batch_size * dim
    with _threads(header.threads), tqdm(total=length, desc="decompress", unit="var", disable=not progress,
                                        dynamic_ncols=True) as bar:
        for start in range(0, length, block):
            try:
                words = np.frombuffer(source.read(4 * _read_varint(source)), "<u4").astype(np.uint32)
            except (EOFError, ValueError):
                raise CompressionError(f"{name} has a damaged chunk table") from None
            decoder = constriction.stream.queue.RangeDecoder(words)

            def decode(x, rows, var, freqs):
                try:
                    values = decoder.decode(family, freqs)
                except Exception:   # constriction rejects impossible code words (with an AssertionError)
                    raise _mismatch(header, device, name, "its code cannot be decoded") from None
                x[rows, var] = torch.from_numpy(values.astype(np.int64)).to(device)

            x, lengths = _rows(np.zeros(min(block, length - start), np.int64), dim, device)
            _walk(model, x, lengths, header.policy, decode, bar)
            values = x.cpu().numpy().reshape(-1)[:min(block, length - start)]
            writer.write(values)
            data_crc = zlib.crc32(values.astype(np.uint8), data_crc)
    if data_crc != int.from_bytes(source.read(4), "little"):
        raise _mismatch(header, device, name, "the decoded data fails its checksum")
    writer.finish()
    return length


_KIND_WORDS = {"text": "text8 text (a text8 model's tokens)", "bytes": "bytes (a byte model's)",
               "npy": "an image array", "png": "a picture", "image": "images"}


def _mismatch(header: _Header, device: torch.device, name: str, what: str) -> CompressionError:
    """The error for an intact file whose decoding went astray: the probabilities differ here."""
    cause = ("it was compressed with another torch or constriction version or on another kind of "
             "processor, which changes the network's last bits: decompress it there"
             if header.environment != _environment(device) else
             "the file is intact, so this machine computes the model's probabilities differently")
    return CompressionError(f"{name}: {what}; {cause}")


# ---------------------------------------------------------------- files
def _write(path: Path, write) -> None:
    """`write(stream)` into `path` through `files.write_atomic`: a temporary file beside it,
    opened (so the folder checked writable) before any work and renamed at the end, so a failed
    run leaves no partial output, and one whose process was killed is cleared by the next write
    into the folder. An OSError becomes a one-line CompressionError."""
    try:
        write_atomic(path, write)
    except OSError as err:
        raise CompressionError(f"cannot write {path}: {err.strerror or err}") from None


def _check_paths(source: Path, target: Path) -> None:
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise CompressionError(f"OUTPUT {target} is the input file itself; choose another output path")


def compress_file(model: AnyOrderModel, config, meta: dict, source: str | Path, target: str | Path,
                  batch_size: int = 128, threads: int | None = None, progress: bool = False,
                  steps: int | None = None, precision: str = "auto") -> dict:
    """Compress the file `source` into `target`, streamed batch by batch, with `steps`
    near-equal steps per path (default: one variable per step, the exact likelihood), the
    network in `precision` ("auto": bf16 where the device multiplies it natively, else fp32).
    Everything that can be refused (the model, the input, its vocabulary, the output) is
    refused before any work. Returns sizes: variables, bytes in and out, and the bytes out
    that are not range-coder words (header, chunk lengths, checksums)."""
    source, target = Path(source), Path(target)
    policy = None if steps is None or steps >= meta["dim"] else uniform_policy(meta["dim"], steps)
    _check_model(model, meta, policy)
    _check_paths(source, target)
    precision = coding_precision(precision, model.device)
    content = read_content(source, meta)
    fingerprint = model_fingerprint(model, config, meta)
    words = []
    _write(target, lambda out: words.append(compress(model, fingerprint, content, out, batch_size, threads,
                                                       progress, policy, precision)))
    size = target.stat().st_size
    return {"variables": content.length, "bytes_in": source.stat().st_size, "bytes_out": size,
            "header_bytes": size - words[0]}


def decompress_file(model: AnyOrderModel, config, meta: dict, source: str | Path, target: str | Path,
                    progress: bool = False) -> dict:
    """Decompress `source` into `target`, streamed batch by batch; returns sizes: variables,
    bytes in and out."""
    source, target = Path(source), Path(target)
    _check_model(model, meta)
    _check_paths(source, target)
    if not source.is_file():
        raise CompressionError(f"no such compressed file: {source}")
    fingerprint = model_fingerprint(model, config, meta)
    variables = []
    with source.open("rb") as f:
        _write(target, lambda out: variables.append(decompress(model, fingerprint, f, meta, out, str(source),
                                                               progress)))
    return {"variables": variables[0], "bytes_in": source.stat().st_size, "bytes_out": target.stat().st_size}
