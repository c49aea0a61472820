"""Byte models on the raw Shakespeare plays: likelihoods beside a left-to-right Transformer,
compression against the classic codecs, coding speed and the peak memory of streaming compression.

0. `--train-baseline`: a left-to-right byte Transformer (`LeftToRight`: the project's blocks,
   the run's width, depth, heads, optimiser, schedule, batch, steps, precision and seed; the
   run's learning rate unless `--baseline-lr` gives it its own, so that each model can be
   compared at the learning rate it does best with), trained here through the trainer's own
   step and saved to `--baseline`.
1. Test bits per byte of the run (its test split: rows of D bytes): the joint, the
   card-uniform marginal (bits per queried byte) and 50% infilling (half of each row's bytes
   given, drawn from a fixed seed; bits per hole), with standard errors over rows; the
   baseline's joint, and the paired difference.
2. The held-out bytes (the last 10% of the plays: valid and test splits, never trained on),
   whole and in slices of 16 KB and 64 KB, each slice its own file: `anyorder compress`, each
   file decoded and checked byte for byte; the baseline's exact code length (joint of full
   rows, the prefix of the last partial row) plus the format's bytes, marked "≈"; bzip2 -9,
   xz -9e and zstd -19 (their command lines, or python's bz2 / lzma / zstandard where missing).
   The CPU seconds of those compress and decompress runs give the coding speed.
3. `--step-time N`: CPU time of a training step of the run's config and of the baseline.
4. `--memory SIZE_MB`: peak RSS of `anyorder compress` (GNU time) on a file of SIZE_MB random
   bytes, stopped after `--memory-seconds` by SIGTERM (the file streams in chunks; a file
   that took hours to code is measured over its first chunks), beside an 8 KB file coded whole.

    python benchmarks/bytes.py --threads 1 --run runs/text-bytes-cpu --baseline runs/text-bytes-ltr.pt --train-baseline
    python benchmarks/bytes.py --threads 1 --run runs/text-bytes-cpu --baseline runs/ltr-lr005.pt --train-baseline --baseline-lr 0.005
    python benchmarks/bytes.py --threads 1 --no-likelihood --no-compression --memory 1024 --step-time 5
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from torch import nn

from anyorder.build import load_model
from anyorder.compress import compress_file, decompress_file
from anyorder.config import Config
from anyorder.data import load_data
from anyorder.data.text import shakespeare_plays
from anyorder.evaluate import marginal_masks
from anyorder.nets.base import Network
from anyorder.nets.transformer import Block, alibi_slopes, init_weights
from anyorder.optim import optimizer_for
from anyorder.precision import autocast_for
from anyorder.train import Objective, Training, lr_factor, train_step
from common import add_threads_flag, machine, set_threads

SLICES = (64 * 1024, 16 * 1024)


def _python_zstd_19(data: bytes) -> int | None:
    try:
        import zstandard
    except ImportError:
        return None
    return len(zstandard.ZstdCompressor(level=19).compress(data))


# name: (command line reading stdin, python stand-in where the tool is missing)
CODECS = {"bzip2 -9": (["bzip2", "-9", "-c"], lambda data: len(bz2.compress(data, 9))),
          "xz -9e": (["xz", "-9e", "-c"], lambda data: len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))),
          "zstd -19": (["zstd", "-19", "-c", "-q"], _python_zstd_19)}


def codec_size(name: str, data: bytes) -> int | None:
    """Bytes out of a classic codec on `data`: its command line where installed, else python's
    module (bz2, lzma; zstandard if present), None where neither exists."""
    command, stand_in = CODECS[name]
    if shutil.which(command[0]):
        return len(subprocess.run(command, input=data, capture_output=True, check=True).stdout)
    return stand_in(data)


def codec_sources() -> str:
    return ", ".join(f"{name}: {'command line' if shutil.which(command[0]) else 'python stand-in'}"
                     for name, (command, _) in CODECS.items())


# ---------------------------------------------------------------- the left-to-right baseline
class LeftToRight(Network):
    """A causal byte Transformer: p(x_t | x_<t) for every t of a row in one pass, the usual
    left-to-right model, from the project's Transformer blocks with the preset network's width,
    depth, heads, MLP, position table and ALiBi (here on a causal mask). A start token stands
    before x_0, so a row is scored from nothing, as the any-order joint is."""

    def __init__(self, dim: int, num_classes: int, width: int = 128, depth: int = 4, heads: int = 4,
                 mlp: int | None = None, attention_bias: str = "alibi", **_):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.token = nn.Embedding(num_classes + 1, width)           # index num_classes: the start token
        self.position = nn.Parameter(torch.zeros(dim, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp or 4 * width, 0.0) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        slopes = alibi_slopes(heads) if attention_bias == "alibi" else torch.zeros(heads)
        distance = torch.arange(dim)[:, None] - torch.arange(dim)       # query i, key j: i − j
        bias = (-slopes[:, None, None] * distance.clamp(min=0)).masked_fill(distance < 0, float("-inf"))
        self.register_buffer("bias", bias, persistent=False)
        init_weights(self, [self.position], self.blocks, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `[B, D, K]` of p(x_t | x_<t) from bytes `[B, D]`."""
        start = torch.full_like(x[:, :1], self.num_classes)
        h = self.token(torch.cat([start, x[:, :-1]], 1)) + self.position
        for block in self.blocks:
            h = block(h, self.bias)
        return self.head(self.ln_f(h))

    def output_layers(self) -> tuple[nn.Module, ...]:
        return (self.head,)

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_mask) per row `[B]` in nats; `mask` must be a prefix of each row (None: the
        joint), the only marginals a left-to-right model gives exactly."""
        log_p = torch.log_softmax(self(x).float(), -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
        if mask is None:
            return log_p.sum(-1)
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError("a left-to-right model scores prefixes only")
        return (log_p * mask).sum(-1)

    def loss(self, x: torch.Tensor, drawn=None, generator=None) -> torch.Tensor:
        """Mean NLL in nats per byte (the signature `train.train_step` calls)."""
        return -self.log_prob(x).mean() / x.shape[1]


def train_left_to_right(config: Config, out: Path) -> None:
    """Train `LeftToRight` with the preset's network size, optimiser, schedule, batch, steps,
    precision and seed on the preset's data, through `train.train_step` (the trainer's own
    step) and batches drawn as the trainer draws them; save weights and config to `out`."""
    torch.manual_seed(config.train.seed)
    data = load_data(config.data)
    model = LeftToRight(data.dim, data.num_classes, **config.net)
    optimizer = optimizer_for(model, config.optim)
    autocast = autocast_for(config.train.precision, torch.device("cpu"))
    o, t = config.optim, config.train
    gen, objective = torch.Generator().manual_seed(t.seed), Objective(model)
    start, losses = time.perf_counter(), []
    for step in range(t.steps):
        x = data.train_batch(t.batch_size, gen)
        lr = o.lr * lr_factor(step, o.warmup, o.decay, t.steps)
        loss, _ = train_step(objective, optimizer, x, None, lr, o.clip, autocast)
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == t.steps:
            print(f"left-to-right step {step + 1}/{t.steps}: loss {np.mean(losses[-50:]) / math.log(2):.4f} "
                  f"bits/byte, {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": model.state_dict(), "config": config.to_dict(), "meta": {"dim": data.dim,
                "num_classes": data.num_classes}, "seconds": time.perf_counter() - start}, out)


def step_seconds(config: Config, steps: int) -> tuple[float, float]:
    """CPU seconds of one training step of the run's config (`Training.one_step`: a drawn
    batch, forward, backward, optimiser, as `anyorder train` takes it) and of the baseline's
    step on the same batch size, each the median of `steps` after one warm-up."""
    training = Training(config)
    data, times = training.data, {"preset": [], "baseline": []}
    model = LeftToRight(data.dim, data.num_classes, **config.net)
    optimizer, objective = optimizer_for(model, config.optim), Objective(model)
    autocast, gen = autocast_for(config.train.precision, torch.device("cpu")), torch.Generator().manual_seed(0)
    for step in range(steps + 1):
        start = time.process_time()
        training.one_step()
        middle = time.process_time()
        train_step(objective, optimizer, data.train_batch(config.train.batch_size, gen), None, config.optim.lr,
                   config.optim.clip, autocast)
        if step:
            times["preset"].append(middle - start)
            times["baseline"].append(time.process_time() - middle)
    return float(np.median(times["preset"])), float(np.median(times["baseline"]))


def load_left_to_right(path: str | Path):
    """(model in eval mode, config, meta) as `train_left_to_right` saved them."""
    saved = torch.load(path, weights_only=True)
    config = Config.from_dict(saved["config"])
    model = LeftToRight(saved["meta"]["dim"], saved["meta"]["num_classes"], **config.net)
    model.load_state_dict(saved["weights"])
    return model.eval(), config, saved["meta"]


def _mean_se(values: torch.Tensor) -> str:
    values = values.double()
    return f"{values.mean().item():.4f} ± {values.std().item() / math.sqrt(len(values)):.4f}"


@torch.no_grad()
def likelihoods(model, rows: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Per-row bits per byte `[N]`: joint, card-uniform marginal and 50% infilling."""
    n, dim = rows.shape
    marginal = marginal_masks(n, dim, seed=0)
    given = torch.rand(n, dim, generator=torch.Generator().manual_seed(1)) < 0.5
    out = {"joint": [], "marginal": [], "infill 50%": []}
    for start in range(0, n, batch_size):
        x, part = rows[start:start + batch_size], slice(start, start + batch_size)
        out["joint"].append(-model.log_prob(x) / dim)
        out["marginal"].append(-model.log_prob(x, marginal[part]) / marginal[part].sum(-1))
        out["infill 50%"].append(-model.conditional_log_prob(x, ~given[part], given[part]) / (~given[part]).sum(-1))
    return {name: torch.cat(parts) / math.log(2) for name, parts in out.items()}


@torch.no_grad()
def code_length_bytes(model, data: bytes, dim: int, batch_size: int) -> float:
    """The exact code length of `data` in bytes: −log2 p of its full rows (joint) and of its
    last partial row (the marginal on its first r positions)."""
    values = torch.tensor(np.frombuffer(data, np.uint8).astype(np.int64))
    count = -(-len(values) // dim)
    rows = torch.zeros(count * dim, dtype=torch.long)
    rows[:len(values)] = values
    rows = rows.view(count, dim)
    seen = torch.arange(dim) < (len(values) - dim * torch.arange(count)).clamp(max=dim).unsqueeze(-1)
    bits = sum(-model.log_prob(rows[i:i + batch_size], seen[i:i + batch_size]).sum().item()
               for i in range(0, count, batch_size)) / math.log(2)
    return bits / 8


def format_bytes(length: int, dim: int, batch_size: int) -> int:
    """The bytes of format 4 besides the code: about 25 of header, 8 of checksums, and per
    chunk of `batch_size` rows a 2-byte word count and up to 2 flushed 32-bit words."""
    chunks = -(-length // (dim * batch_size))
    return 25 + 8 + chunks * (2 + 8)


def coded_size(bundle, data: bytes, work: Path, batch_size: int, timer: dict, precision: str = "auto") -> int:
    """Bytes of `anyorder compress` on `data`, decoded back and checked byte for byte; adds the
    seconds (CPU) of each direction and the bytes to `timer`."""
    source, packed, back = work / "slice.bin", work / "slice.aoz", work / "slice.back"
    source.write_bytes(data)
    start = time.process_time()
    sizes = compress_file(*bundle, source, packed, batch_size=batch_size, threads=torch.get_num_threads(),
                          precision=precision)
    middle = time.process_time()
    decompress_file(*bundle, packed, back)
    timer["compress"] += middle - start
    timer["decompress"] += time.process_time() - middle
    timer["bytes"] += len(data)
    if back.read_bytes() != data:
        raise AssertionError("compress round trip failed")
    return sizes["bytes_out"]


def compression_rows(bundle, baseline, held_out: bytes, work: Path, batch_size: int,
                     precision: str = "auto") -> tuple[list[str], dict]:
    """The table of held-out bits per byte whole and in slices, and the coder's CPU seconds:
    in all and per slice size (`timer[label]`)."""
    names = ["text-bytes-cpu"] + (["left-to-right ≈"] if baseline else [])
    lines = ["| bytes | slices | " + " | ".join(names) + " | " + " | ".join(CODECS) + " |",
             "|---|---|" + "---|" * (len(names) + len(CODECS))]
    timer = {"compress": 0.0, "decompress": 0.0, "bytes": 0}
    for size in (len(held_out), *SLICES):
        pieces = [held_out[i:i + size] for i in range(0, len(held_out), size)]
        label = "whole" if size == len(held_out) else f"{size // 1024} KB"
        part = {"compress": 0.0, "decompress": 0.0, "bytes": 0}
        totals = [sum(coded_size(bundle, piece, work, batch_size, part, precision) for piece in pieces)]
        timer[label] = part
        for key in ("compress", "decompress", "bytes"):
            timer[key] += part[key]
        if baseline:
            totals.append(sum(math.ceil(code_length_bytes(baseline[0], piece, baseline[2]["dim"], batch_size))
                              + format_bytes(len(piece), baseline[2]["dim"], batch_size) for piece in pieces))
        for name in CODECS:
            sizes = [codec_size(name, piece) for piece in pieces]
            totals.append(None if None in sizes else sum(sizes))
        cells = ["n/a" if total is None else f"{8 * total / len(held_out):.3f}" for total in totals]
        lines.append(f"| {len(held_out)} | {label} ({len(pieces)}) | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines, timer


def peak_rss_mb(run: str, source: Path, target: Path, seconds: float, batch_size: int) -> tuple[float, float, int, int]:
    """(peak RSS in MB, seconds, exit status, bytes coded) of `anyorder compress` under GNU
    time, stopped by SIGTERM after `seconds`; bytes coded from its last progress count."""
    command = ["/usr/bin/time", "-v", "timeout", "-s", "TERM", str(seconds), sys.executable, "-m", "anyorder.cli",
               "compress", run, str(source), str(target), "--threads", str(torch.get_num_threads()),
               "--batch-size", str(batch_size)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    coded = re.findall(r"(\d+)/\d+ \[", done.stderr)
    return (int(rss.group(1)) / 1024 if rss else float("nan"), elapsed, done.returncode,
            int(coded[-1]) if coded else 0)


def memory_rows(run: str, size_mb: int, seconds: float, batch_size: int) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        folder = Path(folder)
        small, big = folder / "small.bin", folder / "big.bin"
        rng = np.random.default_rng(0)
        small.write_bytes(rng.integers(0, 256, 8 * 1024, dtype=np.uint8).tobytes())
        with big.open("wb") as f:
            block = rng.integers(0, 256, 1 << 24, dtype=np.uint8).tobytes()
            for _ in range(size_mb // 16):
                f.write(block)
        for source, limit in ((small, 10 * seconds), (big, seconds)):
            target = folder / f"{source.stem}.aoz"
            rss, elapsed, status, coded = peak_rss_mb(run, source, target, limit, batch_size)
            left = sorted(p.name for p in folder.glob(f"*{source.stem}.aoz*"))
            left = f"finished, wrote {left}" if status == 0 else f"stopped by SIGTERM (exit {status}), left {left}"
            chunks = -(-coded // (batch_size * load_model(run)[2]["dim"]))
            lines.append(f"- compress of {source.stat().st_size / 2**20:.2f} MB: peak RSS {rss:.0f} MB, "
                         f"{elapsed:.0f} s, {coded} bytes coded in {chunks} chunks, {left}")
            print(lines[-1], flush=True)
    return lines


def likelihood_rows(bundle, baseline, args) -> list[str]:
    """The table of test bits per byte: the preset's three queries, the baseline's joint, and
    their paired difference on the joint."""
    model, config, meta = bundle
    test = load_data(config.data).split("test")
    test = test[:args.rows] if args.rows else test
    lines = [f"test bits per byte ({len(test)} rows of {meta['dim']} bytes; marginal and infilling per queried byte):",
             "", "| run | joint | card-uniform marginal | infill 50% |", "|---|---|---|---|"]
    scores = likelihoods(model, test, args.batch_size)
    lines.append(f"| text-bytes-cpu ({config.train.out}) | " + " | ".join(map(_mean_se, scores.values())) + " |")
    print(lines[-1], flush=True)
    if baseline:
        with torch.no_grad():
            joint = torch.cat([-baseline[0].log_prob(test[i:i + args.batch_size]) for i in
                               range(0, len(test), args.batch_size)]) / (meta["dim"] * math.log(2))
        lines.append(f"| left-to-right Transformer ({args.baseline}) | {_mean_se(joint)} | — | — |")
        lines.append(f"\njoint, preset − left-to-right (paired over rows): {_mean_se(scores['joint'] - joint)} "
                     "bits/byte")
        print("\n".join(lines[-2:]), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/text-bytes-cpu", help="the byte preset's run")
    parser.add_argument("--baseline", help="the left-to-right baseline's weights (.pt), trained here first with "
                        "--train-baseline (the run's size, optimiser, batch and steps)")
    parser.add_argument("--train-baseline", action="store_true", help="train the baseline into --baseline first")
    parser.add_argument("--baseline-lr", type=float, help="the baseline's learning rate (default: the run's)")
    parser.add_argument("--rows", type=int, default=0, help="test rows for the likelihoods (0: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per likelihood batch")
    parser.add_argument("--coder-batch", type=int, default=128, help="rows per compress chunk (--batch-size of compress)")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                        help="--precision of compress (auto: bf16 where the CPU multiplies it natively)")
    parser.add_argument("--no-likelihood", action="store_true", help="skip section 1")
    parser.add_argument("--no-compression", action="store_true", help="skip section 2")
    parser.add_argument("--memory", type=int, metavar="SIZE_MB", help="peak RSS of compress on a file this big")
    parser.add_argument("--memory-seconds", type=float, default=60)
    parser.add_argument("--step-time", type=int, metavar="STEPS", help="CPU time per training step of the "
                        "run's config and of the baseline (median of STEPS)")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    lines = [machine(torch.device("cpu")), f"uptime: {os.popen('uptime').read().strip()}", ""]
    bundle = load_model(args.run)
    if args.train_baseline:
        if not args.baseline:
            parser.error("--train-baseline needs --baseline (where to save it)")
        config = bundle[1].to_dict()
        if args.baseline_lr is not None:
            if not 0 < args.baseline_lr <= 1:
                parser.error(f"--baseline-lr must lie in (0, 1], got {args.baseline_lr}")
            config["optim"]["lr"] = args.baseline_lr
        train_left_to_right(Config.from_dict(config), Path(args.baseline))
    baseline = load_left_to_right(args.baseline) if args.baseline else None
    if baseline:
        b, r = baseline[1], bundle[1]
        lines.append(f"baseline: left-to-right Transformer, width {b.net['width']}, depth {b.net['depth']}, "
                     f"{b.train.steps} steps of {b.train.batch_size} rows (the run: {r.net['width']}, "
                     f"{r.net['depth']}, {r.train.steps} of {r.train.batch_size}), lr {b.optim.lr} (the run: "
                     f"{r.optim.lr}), trained in "
                     f"{torch.load(args.baseline, weights_only=True)['seconds']:.0f} s")
    if args.step_time:
        preset, ltr = step_seconds(bundle[1], args.step_time)
        t = bundle[1].train
        lines.append(f"training step, CPU clock, {torch.get_num_threads()} thread(s), batch {t.batch_size}: "
                     f"the run's config {1000 * preset:.0f} ms ({t.steps} steps: {preset * t.steps / 60:.1f} min), "
                     f"the left-to-right baseline {1000 * ltr:.0f} ms")
        print(lines[-1], flush=True)
    if not args.no_likelihood:
        lines += likelihood_rows(bundle, baseline, args)
    if not args.no_compression:
        plays = shakespeare_plays()
        held_out = plays[round(0.9 * len(plays)):]
        lines += ["", f"compressed held-out bytes (the last 10% of the plays), bits per byte: `anyorder compress` "
                  f"(batch {args.coder_batch}, precision {args.precision}), every file decoded byte-identical; ≈: the exact code length plus the "
                  f"format's bytes (no coder for that model); codecs: {codec_sources()}", ""]
        with tempfile.TemporaryDirectory() as folder:
            rows, timer = compression_rows(bundle, baseline, held_out, Path(folder), args.coder_batch,
                                           args.precision)
        lines += rows + ["", f"coding speed ({torch.get_num_threads()} thread(s), CPU time), compress / decompress:"]
        for label in ("whole", *(f"{size // 1024} KB" for size in SLICES), None):
            part = timer[label] if label else timer
            kb = part["bytes"] / 1024
            lines.append(f"- {label + ' files' if label else 'all of them'} ({part['bytes']} bytes): "
                         f"{kb / part['compress']:.2f} / {kb / part['decompress']:.2f} KB/s")
        print(lines[-1], flush=True)
    if args.memory:
        lines += ["", f"peak memory of streaming compress ({args.run}, batch {args.coder_batch}):"]
        lines += memory_rows(args.run, args.memory, args.memory_seconds, args.coder_batch)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
