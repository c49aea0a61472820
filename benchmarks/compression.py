"""Lossless compression with a trained model against its own exact likelihood and classic codecs.

For text: files made of the first n characters of the model's test split (n not a multiple
of D, so the partial last row is coded too); for images: a .npy array of the first test
images. The largest files are also coded with `--steps K` budgets (K passes per row; their
gap to the exact code length is the price of coding several variables from one node). Per file it prints the size of `anyorder compress` in bits per character /
dimension, the model's exact code length for the very same content (Σ −log2 p over the
rows: the joint for full rows, the marginal on its first r positions for a partial one,
from `AnyOrderModel.log_prob`, independently of the coder), the gap between the two, the
sizes of gzip -9, bzip2 -9, xz -9 and zstd -19 on the same bytes (raw pixel bytes for
images, which favours them: no .npy header), and encode / decode speed. Every decoded file
is checked byte for byte against the original.

    python benchmarks/compression.py --threads 1                          # runs/text-cpu, runs/digits-cpu
    python benchmarks/compression.py --text-run R1 --image-run R2 --text-sizes 1000 16000 --steps 4 16
    python benchmarks/compression.py --quick --threads 1                  # small files, a minute or two
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anyorder.build import load_model
from anyorder.compress import compress_file, decompress_file, read_content
from anyorder.data import load_data
from common import add_threads_flag, machine, set_threads


def zstd_19(data: bytes) -> int | None:
    """Bytes of zstd -19: the zstandard package, else the zstd program, else None."""
    try:
        import zstandard
        return len(zstandard.ZstdCompressor(level=19).compress(data))
    except ImportError:
        pass
    if shutil.which("zstd"):
        return len(subprocess.run(["zstd", "-19", "-c", "-q"], input=data, capture_output=True,
                                  check=True).stdout)
    return None


def baselines(data: bytes) -> dict[str, int | None]:
    return {"gzip -9": len(gzip.compress(data, 9, mtime=0)), "bzip2 -9": len(bz2.compress(data, 9)),
            "xz -9": len(lzma.compress(data, preset=9)), "zstd -19": zstd_19(data)}


@torch.no_grad()
def exact_bits(model, rows: torch.Tensor, lengths: torch.Tensor, batch_size: int) -> torch.Tensor:
    """−log2 p of each row's coded variables `[N]`: the model's exact likelihood along its path."""
    seen = torch.arange(rows.shape[1]) < lengths.unsqueeze(-1)
    parts = [model.log_prob(rows[i:i + batch_size], seen[i:i + batch_size])
             for i in range(0, len(rows), batch_size)]
    return -torch.cat(parts).double() / math.log(2)


def code(bundle, source: Path, work: Path, batch_size: int, threads: int, steps: int | None = None) -> dict:
    """Compress and decompress one file; sizes, timings and the byte-for-byte check."""
    packed, back = work / (source.name + ".aoz"), work / ("back-" + source.name)
    start = time.perf_counter()
    sizes = compress_file(*bundle, source, packed, batch_size=batch_size, threads=threads, steps=steps)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decompress_file(*bundle, packed, back)
    decode_s = time.perf_counter() - start
    if back.read_bytes() != source.read_bytes():
        raise SystemExit(f"round trip FAILED for {source}")
    return {**sizes, "encode_s": encode_s, "decode_s": decode_s}


def report(name: str, variables: int, ours: dict, ideal_bits: float, raw: bytes) -> str:
    """One table row: our size, the exact code length, the gaps (whole file; range-coder words
    alone, i.e. without the fixed header), the classic codecs and our speed."""
    rate, ideal = 8 * ours["bytes_out"] / variables, ideal_bits / variables
    coder = 8 * (ours["bytes_out"] - ours["header_bytes"]) / variables
    line = (f"| {name} | {variables} | {ours['bytes_out']} | {rate:.4f} | {ideal:.4f} | "
            f"{rate - ideal:+.4f} ({100 * (rate - ideal) / ideal:+.2f}%) | "
            f"{coder - ideal:+.4f} ({100 * (coder - ideal) / ideal:+.2f}%) |")
    for size in baselines(raw).values():
        line += f" {8 * size / variables:.3f} |" if size is not None else " n/a |"
    return line + f" {variables / ours['encode_s']:.0f} / {variables / ours['decode_s']:.0f} |"


HEADER = ("| file | {unit}s | anyorder bytes | anyorder bits/{abbr} | exact bits/{abbr} | gap | gap without "
          "header | gzip -9 | bzip2 -9 | xz -9 | zstd -19 | encode / decode {unit}s/s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def text_rows(args, work: Path) -> list[str]:
    bundle = load_model(args.text_run)
    model, config, meta = bundle
    vocab = np.frombuffer(meta["vocab"].encode(), np.uint8)
    stream = load_data(config.data).split("test").reshape(-1)
    largest = max(args.text_sizes)
    if largest > len(stream):
        raise SystemExit(f"the test split has {len(stream)} characters; --text-sizes asks for {largest}")
    dim = meta["dim"]
    full_rows = stream[:largest // dim * dim].view(-1, dim)
    start = time.perf_counter()
    row_bits = exact_bits(model, full_rows, torch.full((len(full_rows),), dim), args.batch_size)
    print(f"exact likelihood of {len(full_rows)} full test rows: {time.perf_counter() - start:.0f} s, "
          f"{row_bits.mean().item() / dim:.4f} ± {row_bits.std().item() / dim / math.sqrt(len(row_bits)):.4f} "
          f"bits per character (the model's exact joint test bpd on these rows)")
    lines = [HEADER.format(unit="character", abbr="char")]
    for n in args.text_sizes:
        raw = vocab[stream[:n].numpy()].tobytes()
        source = work / f"shakespeare-test-{n}.txt"
        source.write_bytes(raw)
        content = read_content(source, meta)
        ideal = row_bits[:n // dim].sum().item()
        if n % dim:
            ideal += exact_bits(model, content.rows[-1:], content.lengths[-1:], 1).item()
        for steps in [None] + (args.steps if n == largest else []):
            ours = code(bundle, source, work, args.batch_size, args.threads, steps)
            lines.append(report(_label(source.name, steps), n, ours, ideal, raw))
            print(lines[-1], flush=True)
    return lines


def image_rows(args, work: Path) -> list[str]:
    bundle = load_model(args.image_run)
    model, config, meta = bundle
    test = load_data(config.data).split("test")
    lines = [HEADER.format(unit="dimension", abbr="dim")]
    for n in args.images:
        images = test[:n].numpy().astype(np.uint8).reshape(n, *meta["shape"])
        source = work / f"{meta['source']}-test-{n}.npy"
        np.save(source, images)
        content = read_content(source, meta)
        start = time.perf_counter()
        ideal = exact_bits(model, content.rows, content.lengths, args.batch_size).sum().item()
        print(f"exact likelihood of {n} test images: {time.perf_counter() - start:.0f} s, "
              f"{ideal / images.size:.4f} bits per dimension")
        for steps in [None] + (args.steps if n == max(args.images) else []):
            ours = code(bundle, source, work, args.batch_size, args.threads, steps)
            lines.append(report(_label(source.name, steps), images.size, ours, ideal, images.tobytes()))
            print(lines[-1], flush=True)
    return lines


def _label(name: str, steps: int | None) -> str:
    return name if steps is None else f"{name}, --steps {steps}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text-run", default="runs/text-cpu")
    parser.add_argument("--image-run", default="runs/digits-cpu")
    parser.add_argument("--text-sizes", type=int, nargs="*", default=[1000, 12000],
                        help="characters per text file (0 files: skip text)")
    parser.add_argument("--images", type=int, nargs="*", default=[20, 180],
                        help="test images per .npy file (0 files: skip images)")
    parser.add_argument("--steps", type=int, nargs="*", default=[8, 16],
                        help="also code the largest file with these step budgets (K passes per row)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="text files of 300 and 1000 characters, 20 images")
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.quick:
        args.text_sizes, args.images, args.steps = [300, 1000], [20], [8]
    print(machine(torch.device("cpu")))
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        if args.text_sizes:
            lines += [f"text: {args.text_run}", ""] + text_rows(args, Path(folder)) + [""]
        if args.images:
            lines += [f"images: {args.image_run}", ""] + image_rows(args, Path(folder)) + [""]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(machine(torch.device("cpu")) + "\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
