"""Lossless compression with an AO-ARM's exact conditionals along its protocol path.

An exact likelihood is a code length: walking the path of the query x_e and coding each
variable with p(x_{e(t)} | x_{e(<t)}) in a range coder costs −log2 p(x_e) bits plus a few
bytes. A text becomes rows of D characters, its last partial row the marginal query on
its first r positions; images are whole rows. A step policy (K steps, each coding several
variables from one node) trades size for K passes per row instead of D.

Decoding must see bit for bit the probabilities the encoder saw. So (1) probabilities are
quantised to integers summing to 2**PRECISION before they reach the coder, and (2) the
decoder repeats the encoder's computations exactly: the same batches of rows, the same
passes (one per path step, the decoder cannot do otherwise), the same torch thread
count — convolution outputs change in their last bits with the batch size. The header
records batch size, thread count and device kind; a checksum of the original data,
checked after decoding, catches anything left (another torch build or CPU kind).

File layout (little-endian; 30-odd bytes besides the code): MAGIC, format version, model
fingerprint, environment fingerprint, device and content kinds, CRC-32 of the data, then
varints: threads, batch size, the content's layout (text: length; npy: dtype and shape;
png: mode); then the range coder's 32-bit words and a CRC-32 of everything before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import budget, lattice
from .errors import UserError
from .model import AnyOrderModel
from .pictures import to_images

MAGIC, FORMAT_VERSION = b"AOZ", 1
PRECISION = 24                      # quantised probabilities are integers summing to 2**24
KINDS = ("text", "npy", "png")      # what a compressed file holds
DEVICES = ("cpu", "cuda", "mps")
MODES = ("L", "RGB")                # PNG modes: grey, colour
_HEAD = struct.Struct("<3sB8s4sBI")      # magic, version, model, environment, device << 4 | kind, data CRC
_CRC = struct.Struct("<I")


class CompressionError(UserError):
    """Unusable input, a foreign or damaged compressed file, or a missing coder (one line)."""


@dataclass
class Content:
    """What a file holds as the model sees it: rows `[N, D]` int64 of values, the number of
    variables coded in each row `lengths [N]` (D except for a text's last partial row), and
    what it takes to write the file back (`kind` in KINDS; npy: dtype and shape)."""

    kind: str
    rows: torch.Tensor
    lengths: torch.Tensor
    layout: dict = field(default_factory=dict)


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


def _walk(model: AnyOrderModel, content: Content, batch_size: int, policy: list[int] | None, code,
          progress: bool, desc: str) -> None:
    """Run `path_conditionals` over the rows of `content` in batches of `batch_size`, calling
    `code(x_batch, rows, var, frequencies)` at every step; writes into x_batch reach content.rows."""
    rows_all, dim = content.rows.shape
    target = torch.arange(dim, device=content.rows.device) < content.lengths.unsqueeze(-1)
    with tqdm(total=int(content.lengths.sum()), desc=desc, unit="var", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, rows_all, batch_size):
            x = content.rows[start:start + batch_size]
            for rows, var, params in path_conditionals(model, x, target[start:start + batch_size], policy):
                code(x, rows, var, fixed_point(params))
                bar.update(len(rows))


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


def _device(model: AnyOrderModel) -> torch.device:
    return next(model.parameters()).device


def _check_model(model: AnyOrderModel, meta: dict) -> None:
    if not meta.get("num_classes"):
        raise CompressionError("compress codes categorical data (text, images); this model's "
                               "variables are continuous")
    if lattice.parse_name(model.protocol, lattice.PROTOCOLS, "protocol")[0] == "random":
        raise CompressionError("compress needs a deterministic protocol (natural or strided(S)); "
                               "this model walks a fresh random order on every call")
    if model.training:
        raise CompressionError("the model is in training mode; call model.eval() first "
                               "(dropout would make the probabilities irreproducible)")


# ---------------------------------------------------------------- compress / decompress bytes
@dataclass
class _Header:
    model: bytes
    environment: bytes
    device: str
    threads: int
    batch_size: int
    kind: str
    data_crc: int
    layout: dict
    policy: list[int] | None = None

    def pack(self) -> bytes:
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, self.model, self.environment,
                          DEVICES.index(self.device) << 4 | KINDS.index(self.kind), self.data_crc)
        policy = self.policy or []
        head += _varints(self.threads, self.batch_size, len(policy), *policy)
        if self.kind == "text":
            return head + _varints(self.layout["length"])
        if self.kind == "png":
            return head + _varints(MODES.index(self.layout["mode"]))
        dtype, shape = self.layout["dtype"].encode("ascii"), self.layout["shape"]
        return head + _varints(len(dtype)) + dtype + _varints(len(shape), *shape)

    @classmethod
    def unpack(cls, blob: bytes, name: str) -> tuple["_Header", bytes]:
        """(header, range-coder payload) of a whole compressed file; one-line errors for
        foreign, newer, damaged and truncated files."""
        if not blob or blob[:len(MAGIC)] != MAGIC[:len(blob)]:
            raise CompressionError(f"{name} is not a file written by anyorder compress")
        if len(blob) < _HEAD.size + _CRC.size:
            raise CompressionError(f"{name} is truncated ({len(blob)} bytes, shorter than a header)")
        _, version, model, environment, device_kind, data_crc = _HEAD.unpack_from(blob)
        if version != FORMAT_VERSION:
            raise CompressionError(f"{name} uses compressed format version {version}; this anyorder "
                                   f"reads version {FORMAT_VERSION}")
        if zlib.crc32(blob[:-_CRC.size]) != _CRC.unpack(blob[-_CRC.size:])[0]:
            raise CompressionError(f"{name} is corrupted or truncated (its checksum does not match)")
        body = io.BytesIO(blob[_HEAD.size:-_CRC.size])
        try:
            header = cls(model, environment, DEVICES[device_kind >> 4], _read_varint(body), _read_varint(body),
                         KINDS[device_kind & 15], data_crc, {})
            header.policy = [_read_varint(body) for _ in range(_read_varint(body))] or None
            if header.kind == "text":
                header.layout["length"] = _read_varint(body)
            elif header.kind == "png":
                header.layout["mode"] = MODES[_read_varint(body)]
            else:
                dtype = body.read(_read_varint(body)).decode("ascii")
                shape = tuple(_read_varint(body) for _ in range(_read_varint(body)))
                header.layout.update(dtype=np.dtype(dtype).str, shape=shape)
        except (IndexError, EOFError, TypeError, ValueError):
            raise CompressionError(f"{name} has a damaged header") from None
        payload = body.read()
        if len(payload) % 4 or header.threads < 1 or header.batch_size < 1:
            raise CompressionError(f"{name} has a damaged header")
        return header, payload


def _varints(*numbers: int) -> bytes:
    """LEB128: 7 bits per byte, high bit set while more bytes follow."""
    out = bytearray()
    for n in numbers:
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out)


def _read_varint(body: io.BytesIO) -> int:
    value = shift = 0
    while shift < 64:
        byte = body.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError("varint too long")


def recorded_device(path: str | Path) -> str:
    """The kind of device ("cpu", "cuda", "mps") a compressed file was written on, which is
    where it must be decompressed."""
    path = Path(path)
    if not path.is_file():
        raise CompressionError(f"no such compressed file: {path}")
    return _Header.unpack(path.read_bytes(), str(path))[0].device


def _row_lengths(kind: str, layout: dict, dim: int) -> torch.Tensor:
    """Variables coded per row `[N]`: a text's last row holds what is left of it."""
    if kind == "text":
        full, rest = divmod(layout["length"], dim)
        return torch.tensor([dim] * full + ([rest] if rest else []), dtype=torch.long)
    count = int(np.prod(layout["shape"])) // dim if kind == "npy" else 1
    return torch.full((count,), dim, dtype=torch.long)


def _data_crc(rows: torch.Tensor) -> int:
    return zlib.crc32(rows.cpu().numpy().astype("<i8").tobytes())


def _valid_policy(policy: list[int] | None, dim: int) -> bool:
    return policy is None or (len(policy) >= 2 and policy[0] == 0 and policy[-1] == dim
                              and all(a < b for a, b in zip(policy, policy[1:])))


def compress(model: AnyOrderModel, fingerprint: bytes, content: Content, batch_size: int = 64,
             threads: int | None = None, progress: bool = False, policy: list[int] | None = None) -> bytes:
    """The compressed file for `content`: header, range-coder words, checksum. `threads`
    (default: torch's current count), `batch_size` and the step `policy` (see
    `path_conditionals`; default one variable per step, the exact likelihood) are recorded;
    decoding repeats them."""
    constriction = _constriction()
    if not _valid_policy(policy, content.rows.shape[1]):
        raise CompressionError(f"a step policy runs 0 = b_0 < b_1 < … < b_K = {content.rows.shape[1]}, "
                               f"got {policy}")
    if batch_size < 1 or batch_size >= 1 << 32:
        raise CompressionError(f"batch_size must be a positive integer, got {batch_size}")
    threads = threads or torch.get_num_threads()
    if not 1 <= threads < 1 << 16:
        raise CompressionError(f"threads must lie in 1..65535, got {threads}")
    device = _device(model)
    content = Content(content.kind, content.rows.to(device), content.lengths.to(device), content.layout)
    encoder, family = constriction.stream.queue.RangeEncoder(), constriction.stream.model.Categorical(perfect=False)

    def encode(x, rows, var, freqs):
        encoder.encode(x[rows, var].cpu().numpy().astype(np.int32), family, freqs)

    with _threads(threads):
        _walk(model, content, batch_size, policy, encode, progress, "compress")
    header = _Header(fingerprint, _environment(device), device.type, threads, batch_size, content.kind,
                     _data_crc(content.rows), content.layout, policy)
    blob = header.pack() + encoder.get_compressed().astype("<u4").tobytes()
    return blob + _CRC.pack(zlib.crc32(blob))


def decompress(model: AnyOrderModel, fingerprint: bytes, blob: bytes, dim: int, name: str = "the input",
               progress: bool = False) -> Content:
    """The content of a compressed file for a model of `dim` variables, decoded with the
    batches, thread count and step policy its header names."""
    constriction = _constriction()
    header, payload = _Header.unpack(blob, name)
    if header.model != fingerprint:
        raise CompressionError(f"{name} was compressed with a different model (fingerprint "
                               f"{header.model.hex()}; this one is {fingerprint.hex()}): decompress it "
                               "with the model that compressed it")
    if not _valid_policy(header.policy, dim):
        raise CompressionError(f"{name} has a damaged header (its step policy does not fit {dim} variables)")
    device = _device(model)
    if header.device != device.type:
        raise CompressionError(f"{name} was compressed on {header.device} and must be decompressed on "
                               f"{header.device} too (--device {header.device}); this model is on {device.type}")
    lengths = _row_lengths(header.kind, header.layout, dim).to(device)
    content = Content(header.kind, torch.zeros(len(lengths), dim, dtype=torch.long, device=device),
                      lengths, header.layout)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    family = constriction.stream.model.Categorical(perfect=False)

    def decode(x, rows, var, freqs):
        try:
            values = decoder.decode(family, freqs)
        except Exception:   # constriction rejects impossible code words (with an AssertionError)
            raise _mismatch(header, device, name, "its code cannot be decoded") from None
        x[rows, var] = torch.from_numpy(values.astype(np.int64)).to(device)

    with _threads(header.threads):
        _walk(model, content, header.batch_size, header.policy, decode, progress, "decompress")
    if _data_crc(content.rows) != header.data_crc:
        raise _mismatch(header, device, name, "the decoded data fails its checksum")
    return Content(content.kind, content.rows.cpu(), content.lengths.cpu(), content.layout)


def _mismatch(header: _Header, device: torch.device, name: str, what: str) -> CompressionError:
    """The error for an intact file whose decoding went astray: the probabilities differ here."""
    cause = ("it was compressed with another torch or constriction version or on another kind of "
             "processor, which changes the network's last bits: decompress it there"
             if header.environment != _environment(device) else
             "the file is intact, so this machine computes the model's probabilities differently")
    return CompressionError(f"{name}: {what}; {cause}")


# ---------------------------------------------------------------- files
def _image_shape(meta: dict) -> tuple[int, int, int]:
    return tuple(int(s) for s in meta["shape"])


def _pixel_levels(meta: dict) -> np.ndarray:
    """The 8-bit value of each level `[K]`, as `pictures.to_images` draws them."""
    levels = meta["num_classes"]
    return to_images(torch.arange(levels).view(1, -1), (1, 1, levels), levels).reshape(-1)


def _read_text(raw: bytes, meta: dict, name: str) -> Content:
    vocab, dim = meta["vocab"], meta["dim"]
    ids = np.full(256, -1, np.int64)
    ids[np.frombuffer(vocab.encode("ascii"), np.uint8)] = np.arange(len(vocab))
    values = ids[np.frombuffer(raw, np.uint8)]
    bad = np.flatnonzero(values < 0)
    if len(bad):
        at = int(bad[0])
        line = raw.count(b"\n", 0, at) + 1
        raise CompressionError(f"{name}: byte {raw[at:at + 1]!r} at position {at} (line {line}) is outside "
                               f"this model's vocabulary {vocab!r}; compress codes only text made of it")
    rows = np.zeros((-(-len(values) // dim), dim), np.int64)
    rows.reshape(-1)[:len(values)] = values
    layout = {"length": len(values)}
    return Content("text", torch.from_numpy(rows), _row_lengths("text", layout, dim), layout)


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
    layout = {"dtype": array.dtype.str, "shape": tuple(array.shape)}
    return Content("npy", torch.from_numpy(array.astype(np.int64).reshape(-1, dim)),
                   _row_lengths("npy", layout, dim), layout)


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
    pixels = np.asarray(picture).reshape(H, W, C).transpose(2, 0, 1).reshape(1, -1)
    level_of = np.full(256, -1, np.int64)
    level_of[_pixel_levels(meta)] = np.arange(meta["num_classes"])
    levels = level_of[pixels]
    bad = np.flatnonzero(levels < 0)
    if len(bad):
        c, y, x = np.unravel_index(bad[0], (C, H, W))
        raise CompressionError(f"{name}: pixel value {pixels.flat[bad[0]]} at row {y}, column {x} is not one "
                               f"of the model's {meta['num_classes']} levels {_pixel_levels(meta).tolist()}")
    return Content("png", torch.from_numpy(levels), _row_lengths("png", {}, C * H * W), {"mode": mode})


def read_content(path: str | Path, meta: dict) -> Content:
    """A text file (text models) or a .png / .npy image file (image models) as rows of levels."""
    path, name = Path(path), str(path)
    if not path.is_file():
        raise CompressionError(f"no such input file: {path}")
    if meta["kind"] == "text":
        return _read_text(path.read_bytes(), meta, name)
    if meta["kind"] != "image":
        raise CompressionError(f"compress handles text and image models; this one models {meta['kind']} data")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise CompressionError(f"{name}: image models compress .png pictures or .npy arrays of levels, "
                               f"got a {suffix or 'suffix-less'} file")
    return (_read_npy if suffix == ".npy" else _read_png)(path, meta, name)


def _content_bytes(content: Content, meta: dict) -> bytes:
    """The file that `read_content` turned into `content`, bytes for bytes (pixels for PNG)."""
    values = content.rows.numpy()
    if content.kind == "text":
        vocab = np.frombuffer(meta["vocab"].encode("ascii"), np.uint8)
        return vocab[values.reshape(-1)[:content.layout["length"]]].tobytes()
    out = io.BytesIO()
    if content.kind == "npy":
        np.save(out, values.astype(content.layout["dtype"]).reshape(content.layout["shape"]))
    else:
        C, H, W = _image_shape(meta)
        pixels = _pixel_levels(meta)[values].reshape(C, H, W).transpose(1, 2, 0)
        Image.fromarray(pixels[..., 0] if C == 1 else pixels, content.layout["mode"]).save(out, "PNG")
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so a failed run leaves no partial output."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise CompressionError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_paths(source: Path, target: Path) -> None:
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise CompressionError(f"OUTPUT {target} is the input file itself; choose another output path")


def compress_file(model: AnyOrderModel, config, meta: dict, source: str | Path, target: str | Path,
                  batch_size: int = 64, threads: int | None = None, progress: bool = False,
                  steps: int | None = None) -> dict:
    """Compress the file `source` into `target`, with `steps` near-equal steps per path
    (default: one variable per step, the exact likelihood); returns sizes: variables, bytes
    in and out, and the bytes out that are not range-coder words (header and checksum)."""
    source, target = Path(source), Path(target)
    _check_model(model, meta)
    _check_paths(source, target)
    content = read_content(source, meta)
    policy = None if steps is None or steps >= meta["dim"] else uniform_policy(meta["dim"], steps)
    blob = compress(model, model_fingerprint(model, config, meta), content, batch_size, threads, progress,
                    policy)
    _write_atomic(target, blob)
    code_bytes = len(_Header.unpack(blob, str(target))[1])
    return {"variables": int(content.lengths.sum()), "bytes_in": source.stat().st_size, "bytes_out": len(blob),
            "header_bytes": len(blob) - code_bytes}


def decompress_file(model: AnyOrderModel, config, meta: dict, source: str | Path, target: str | Path,
                    progress: bool = False) -> dict:
    """Decompress `source` into `target`; returns sizes: variables, bytes in and out."""
    source, target = Path(source), Path(target)
    _check_model(model, meta)
    _check_paths(source, target)
    if not source.is_file():
        raise CompressionError(f"no such compressed file: {source}")
    blob = source.read_bytes()
    content = decompress(model, model_fingerprint(model, config, meta), blob, meta["dim"], str(source), progress)
    data = _content_bytes(content, meta)
    _write_atomic(target, data)
    return {"variables": int(content.lengths.sum()), "bytes_in": len(blob), "bytes_out": len(data)}
