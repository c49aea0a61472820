"""Infilling a text: the model draws the holes and every other byte comes back as it was.

A prompt is a text with holes: marked by a marker (`_` by default; each occurrence is one
missing byte, or one missing character for a text8 model) or given as byte spans. The
query is the prompt's own positions: observed = the bytes given, targets = the holes; a
continuation of N more bytes is asked for, never invented. A byte model takes the prompt
as it is; a text8 model cleans it first (the marker kept), as it was trained.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .data.text import Vocabulary, vocabulary_of
from .errors import UserError, check_count

HOLE = "_"


def as_bytes(text: bytes | str) -> bytes:
    """A prompt or marker as the bytes it stands for: text as UTF-8, where the lone surrogates
    by which Python's argv and file-name decoding keep bytes that are not UTF-8 (e.g. a prompt
    `$'\\xff_'` in bash) turn back into those very bytes."""
    if not isinstance(text, (str, bytes)):
        raise UserError(f"a prompt or marker must be str or bytes, got {type(text).__name__}")
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text


def parse_spans(text: str) -> list[tuple[int, int]]:
    """"3:5,10:12" -> [(3, 5), (10, 12)]: half-open byte spans [start, end) of ASCII digits."""
    spans = []
    for item in text.split(","):
        start, sep, end = (part.strip() for part in item.partition(":"))
        digits = [part.isascii() and part.isdigit() for part in (start, end)]
        if not sep or not all(digits) or int(start) >= int(end):
            raise UserError(f"--holes takes byte spans START:END (END > START >= 0) separated by commas, "
                            f"e.g. 3:5,10:12; got {text!r}")
        spans.append((int(start), int(end)))
    return spans


def prompt_holes(text: bytes, vocab: Vocabulary, marker: bytes | None = None,
                 spans: list[tuple[int, int]] | None = None) -> tuple[bytes, np.ndarray]:
    """(the prompt as the model reads it, holes `[L]` bool): with `spans`, the bytes of
    `text` inside them are the holes (byte models only: cleaning would move them); else each
    occurrence of `marker` (default "_") becomes one hole. A text8 model cleans the text,
    keeping the marker, which must then be one ASCII character that is no letter or digit."""
    if spans is not None:
        if not vocab.every_byte:
            raise UserError("--holes gives byte spans of the text as it is; this text8 model cleans its "
                            "prompt (which moves bytes): mark the holes with a character instead")
        outside = [f"{a}:{b}" for a, b in spans if b > len(text)]
        if outside:
            raise UserError(f"--holes {', '.join(outside)} end(s) beyond the text's {len(text)} bytes")
        holes = np.zeros(len(text), bool)
        for start, end in spans:
            holes[start:end] = True
        return text, holes
    marker = HOLE.encode() if marker is None else marker
    if not marker:
        raise UserError("--hole-marker must not be empty")
    if not vocab.every_byte:
        if len(marker) != 1 or not marker.isascii() or marker.isalnum():
            raise UserError(f"a text8 model's hole marker must be one ASCII character that is no letter "
                            f"or digit (cleaning keeps only it), got {marker!r}")
        text = vocab.clean(text, keep=marker)
    parts = text.split(marker)
    placeholder = vocab.to_bytes([0])
    holes = np.zeros(sum(map(len, parts)) + len(parts) - 1, bool)
    holes[np.cumsum([len(p) + 1 for p in parts[:-1]], dtype=np.int64) - 1] = True
    return placeholder.join(parts), holes


def fill_windows(tokens: torch.Tensor, holes: torch.Tensor, dim: int, num: int,
                 fill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], progress: bool = False) -> torch.Tensor:
    """`num` fills `[num, L]` of the holes of a token row `[L]`; `fill(x [num, D], observed
    [num, D])` draws every unobserved variable of rows of D (a model's `sample`); `progress`:
    a bar over the windows when there are several.

    L <= D: one window; positions past L are drawn too and dropped. Under the natural protocol
    the holes come first on the sampling path, so what is drawn past the prompt never
    influences them: the fills are draws from p(x_holes | x_observed), the marginal query on
    the prompt's own positions. L > D: windows of D tokens at a stride of D/2, left to right;
    each one sees the prompt's bytes and the fills made so far as observed and keeps its draws
    for the holes up to a quarter window before its end (the last window: all that are left),
    so every hole is drawn with at least D/4 tokens of context on each side where the text
    has them.
    """
    length = len(tokens)
    out = tokens.expand(num, length).clone()
    observed = (~holes).expand(num, length).clone()
    stride, done, start = max(dim // 2, 1), 0, 0
    windows = 1 + max(0, -(-(length - dim) // stride))
    bar = tqdm(total=length, unit="B", unit_scale=True, desc="infill", disable=not progress or windows < 2,
               dynamic_ncols=True)
    while done < length:
        if start + dim >= length:
            start, keep = max(length - dim, 0), length
        else:
            keep = start + dim - dim // 4
        end = min(start + dim, length)
        if holes[done:keep].any():
            x = torch.zeros(num, dim, dtype=torch.long)
            seen = torch.zeros(num, dim, dtype=torch.bool)
            x[:, :end - start], seen[:, :end - start] = out[:, start:end], observed[:, start:end]
            drawn = fill(x, seen)[:, done - start:keep - start]
            out[:, done:keep] = torch.where(observed[:, done:keep], out[:, done:keep], drawn)
            observed[:, done:keep] = True
        bar.update(keep - done)
        done, start = keep, start + stride
    bar.close()
    return out


@torch.no_grad()
def infill(model, meta: dict, text: bytes | str, marker: bytes | str | None = None,
           spans: list[tuple[int, int]] | None = None, continuation: int = 0, num: int = 1,
           temperature: float = 1.0, generator: torch.Generator | None = None, *, steps: int | None = None,
           policy=None) -> list[bytes]:
    """`num` fills of a text model's prompt: the prompt's bytes (cleaned first for a text8
    model) with every hole drawn and `continuation` more bytes after it, as bytes (not
    necessarily valid UTF-8: a byte model may draw half a character). `marker`, `spans`:
    see `prompt_holes`; steps / policy: a step budget, as in `AnyOrderModel.sample`."""
    num = check_count(num, "num")
    vocab = vocabulary_of(meta)
    prompt, holes = prompt_holes(as_bytes(text), vocab, None if marker is None else as_bytes(marker), spans)
    tokens, holes = prompt_tokens(prompt, holes, vocab, continuation)
    device = model.device

    def fill(x, observed):
        return model.sample(x.to(device), observed.to(device), temperature, generator, steps=steps,
                            policy=policy).cpu()

    return [vocab.to_bytes(row) for row in fill_windows(tokens, holes, meta["dim"], num, fill)]


def prompt_tokens(prompt: bytes, holes: np.ndarray, vocab: Vocabulary,
                  continuation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens `[L + continuation]` int64 and holes `[L + continuation]` bool of a prompt
    (the continuation: holes after it)."""
    check_count(continuation, "the continuation (bytes after the prompt)", minimum=0)
    tokens = torch.from_numpy(vocab.ids(prompt, "the prompt").astype(np.int64))
    holes = torch.from_numpy(np.concatenate([holes, np.ones(continuation, bool)]))
    tokens = torch.cat([tokens, torch.zeros(continuation, dtype=torch.long)])
    if not len(tokens):
        raise UserError("the prompt is empty and no continuation was asked for (--continue N)")
    if not holes.any():
        raise UserError("nothing to fill: the prompt has no holes (mark each missing byte with the hole "
                        "marker, _ by default, or give them as spans) and no continuation was asked for "
                        "(--continue N)")
    return tokens, holes
