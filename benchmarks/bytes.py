"""Byte models on the raw Shakespeare plays: likelihoods, compression against the classic
codecs, coding speed and the peak memory of streaming compression.

1. Test bits per byte of each run (its test split: rows of D bytes): the joint, the
   card-uniform marginal (bits per queried byte) and 50% infilling (half of each row's bytes
   given, drawn from a fixed seed; bits per hole), with standard errors over rows.
2. The held-out bytes (the last 10% of the plays: valid and test splits, never trained on),
   whole and in slices of 16 KB and 64 KB, each slice its own file: `anyorder compress`
   where the run's network can code (its walk), else the model's exact code length (the
   joint of full rows, the marginal of the last partial row; the coder lands within 64 bits
   of it per chunk, tests/test_compress.py) plus the format's bytes, marked "≈". Beside
   them bzip2 -9, xz -9e and zstd -19 (python's bz2, lzma; the zstandard package if present).
3. `--speed`: compress and decompress KB/s on the threads given, on `--speed-bytes` bytes.
4. `--memory SIZE_MB`: peak RSS of `anyorder compress` (GNU time) on a file of SIZE_MB random
   bytes, stopped after `--memory-seconds` by SIGTERM (the file streams in chunks; a file
   that took hours to code is measured over its first chunks), beside an 8 KB file coded whole.

    python benchmarks/bytes.py --threads 1 --run runs/text-bytes-cpu --baseline runs/text-bytes-ltr
    python benchmarks/bytes.py --threads 1 --run R --coder-run R2 --speed --memory 1024 --out benchmarks/results/bytes.md
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anyorder.build import load_model
from anyorder.compress import CompressionError, compress_file, decompress_file
from anyorder.data import load_data
from anyorder.data.text import shakespeare_plays
from anyorder.evaluate import marginal_masks
from common import add_threads_flag, machine, set_threads

SLICES = (16 * 1024, 64 * 1024)


def zstd_19(data: bytes) -> int | None:
    try:
        import zstandard
    except ImportError:
        return None
    return len(zstandard.ZstdCompressor(level=19).compress(data))


CODECS = {"bzip2 -9": lambda data: len(bz2.compress(data, 9)),
          "xz -9e": lambda data: len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
          "zstd -19": zstd_19}


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
    """The bytes of format 2 besides the code: about 25 of header, 8 of checksums, and per
    chunk of `batch_size` rows a 2-byte word count and up to 2 flushed 32-bit words."""
    chunks = -(-length // (dim * batch_size))
    return 25 + 8 + chunks * (2 + 8)


def compressed_size(bundle, data: bytes, work: Path, batch_size: int) -> tuple[int, bool]:
    """(bytes, measured): `anyorder compress` when this model can code, else the exact code
    length plus the format's bytes (measured False)."""
    model, _, meta = bundle
    source = work / "slice.bin"
    source.write_bytes(data)
    try:
        sizes = compress_file(*bundle, source, work / "slice.aoz", batch_size=batch_size, threads=torch.get_num_threads())
    except CompressionError as err:
        if "node network" not in str(err):
            raise
        ideal = code_length_bytes(model, data, meta["dim"], batch_size)
        return math.ceil(ideal) + format_bytes(len(data), meta["dim"], batch_size), False
    return sizes["bytes_out"], True


def compression_rows(runs: dict, held_out: bytes, work: Path, batch_size: int) -> list[str]:
    names = list(runs)
    lines = ["| bytes | slices | " + " | ".join(f"{n} bits/byte" for n in names) + " | " +
             " | ".join(CODECS) + " |", "|---|---|" + "---|" * (len(names) + len(CODECS))]
    for size in (len(held_out), *SLICES):
        pieces = [held_out[i:i + size] for i in range(0, len(held_out), size)]
        cells = []
        for name in names:
            total, measured = 0, True
            for piece in pieces:
                got, real = compressed_size(runs[name], piece, work, batch_size)
                total, measured = total + got, measured and real
            cells.append(f"{'' if measured else '≈'}{8 * total / len(held_out):.3f}")
        for codec in CODECS.values():
            sizes = [codec(piece) for piece in pieces]
            cells.append("n/a" if None in sizes else f"{8 * sum(sizes) / len(held_out):.3f}")
        label = "whole" if size == len(held_out) else f"{size // 1024} KB"
        lines.append(f"| {len(held_out)} | {label} ({len(pieces)}) | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def speed(bundle, data: bytes, work: Path, batch_size: int) -> str:
    """Compress and decompress KB/s on wall time and on this process's CPU time (on a CPU
    shared with other jobs, the second leaves out the time they held the core)."""
    source, packed, back = work / "speed.bin", work / "speed.aoz", work / "speed.back"
    source.write_bytes(data)
    rates = []
    for run in (lambda: compress_file(*bundle, source, packed, batch_size=batch_size, threads=torch.get_num_threads()),
                lambda: decompress_file(*bundle, packed, back)):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        kb = len(data) / 1024
        rates.append(f"{kb / (time.perf_counter() - wall):.3f} KB/s wall, {kb / (time.process_time() - cpu):.3f} KB/s CPU")
    assert back.read_bytes() == data, "round trip failed"
    return (f"compress {rates[0]}; decompress {rates[1]} ({len(data)} bytes, {torch.get_num_threads()} thread(s), "
            f"batch {batch_size}; {8 * packed.stat().st_size / len(data):.3f} bits/byte)")


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


def likelihood_rows(runs: dict, args) -> list[str]:
    config, meta = runs["preset"][1], runs["preset"][2]
    test = load_data(config.data).split("test")
    test = test[:args.rows] if args.rows else test
    lines = [f"test bits per byte ({len(test)} rows of {meta['dim']} bytes; marginal and infilling per queried byte):",
             "", "| run | joint | card-uniform marginal | infill 50% |", "|---|---|---|---|"]
    scores = {}
    for name, (model, run_config, _) in runs.items():
        scores[name] = likelihoods(model, test, args.batch_size)
        lines.append(f"| {name} ({run_config.train.out}) | " + " | ".join(map(_mean_se, scores[name].values())) + " |")
        print(lines[-1], flush=True)
    if len(scores) == 2:
        lines.append(f"\njoint, preset − left-to-right (paired over rows): "
                     f"{_mean_se(scores['preset']['joint'] - scores['left-to-right']['joint'])} bits/byte")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/text-bytes-cpu", help="the byte preset's run")
    parser.add_argument("--baseline", help="a left-to-right run of the same size (path_mix [1, 0, 0])")
    parser.add_argument("--coder-run", help="the run that measures speed and memory (default --run)")
    parser.add_argument("--rows", type=int, default=0, help="test rows for the likelihoods (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-likelihood", action="store_true", help="skip section 1")
    parser.add_argument("--no-compression", action="store_true", help="skip section 2")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--speed-bytes", type=int, default=4096)
    parser.add_argument("--memory", type=int, metavar="SIZE_MB", help="peak RSS of compress on a file this big")
    parser.add_argument("--memory-seconds", type=float, default=60)
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    lines = [machine(torch.device("cpu")), f"uptime: {os.popen('uptime').read().strip()}", ""]
    runs = {name: load_model(path) for name, path in (("preset", args.run), ("left-to-right", args.baseline)) if path}
    if not args.no_likelihood:
        lines += likelihood_rows(runs, args)
    if not args.no_compression:
        plays = shakespeare_plays()
        held_out = plays[round(0.9 * len(plays)):]
        lines += ["", "compressed held-out bytes, bits per byte (≈: exact code length + format bytes, the "
                  "network cannot code on this branch; no mark: `anyorder compress`, decoded byte-identical):", ""]
        with tempfile.TemporaryDirectory() as folder:
            lines += compression_rows(runs, held_out, Path(folder), args.batch_size)
    coder = args.coder_run or args.run
    if args.speed:
        plays = shakespeare_plays()
        with tempfile.TemporaryDirectory() as folder:
            lines += ["", f"speed ({coder}): " + speed(load_model(coder), plays[-args.speed_bytes:], Path(folder),
                                                       args.batch_size)]
        print(lines[-1], flush=True)
    if args.memory:
        lines += ["", f"peak memory of streaming compress ({coder}, batch {args.batch_size}):"]
        lines += memory_rows(coder, args.memory, args.memory_seconds, args.batch_size)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
