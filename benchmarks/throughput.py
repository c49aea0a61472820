"""How fast anyorder runs on this machine, and how close to the hardware's matmul peak.

(a) peak: the best TFLOP/s of square fp32 and bf16 matmuls;
(b) training: tokens (variables) per second of a full step as `anyorder.train` takes it
    (batch, training nodes or paths, forward + backward under the precision, clipping, AdamW), and
    model FLOPs utilisation = 3 × the network's forward `matmul_flops(batch)` per step
    (forward + backward ≈ 3 forwards) / step time / the measured peak of that precision;
(c) queries: exact joint log-likelihood (`log_prob(estimator="exact")`, D passes) and
    unconditional sampling (`sample` with an empty mask, D passes), in rows per second.
Models are randomly initialised: speed does not depend on training.

    python benchmarks/throughput.py --quick --threads 1          # ~10 s on 2 CPU cores
    python benchmarks/throughput.py --threads 1                  # text-cpu and mnist-cpu, ~4 min
    python benchmarks/throughput.py --device cuda --scale paper  # the text8 and CIFAR-10 paper models
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from anyorder.build import build_model, describe
from anyorder.config import load_config
from anyorder.data import load_data
from anyorder.train import autocast_for
from common import add_threads_flag, machine, median_seconds, resolve, set_threads

PRESETS = {"cpu": ["text-cpu", "mnist-cpu"], "paper": ["text8-paper", "cifar10-paper"]}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_tflops(sizes: list[int], dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """The best TFLOP/s of an n×n by n×n matmul over the given sizes n."""
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = max(best, 2 * n ** 3 / median_seconds(lambda: a @ b, device, repeats) / 1e12)
    return best


def train_step_seconds(model, data, config, batch: int, autocast, device, steps: int) -> float:
    """Median time of one training step, the same work as a step of `anyorder.train`."""
    o = config.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    gen = torch.Generator().manual_seed(0)
    model.train()

    def step():
        x = data.train_batch(batch, gen).to(device)
        drawn = model.draw_training(batch, generator=gen).to(device)
        with autocast:
            loss = model.loss(x, drawn)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), o.clip if o.clip > 0 else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_seconds(step, device, steps, warmup=2)


def query_seconds(model, rows: torch.Tensor, autocast, device) -> tuple[float, float]:
    """Seconds for one exact joint log-likelihood and one unconditional sample of `rows`."""
    model.eval()
    with torch.no_grad(), autocast:
        exact = median_seconds(lambda: model.log_prob(rows, estimator="exact"), device, 1, warmup=0)
        sample = median_seconds(lambda: model.sample(rows, torch.zeros_like(rows, dtype=torch.bool)),
                                device, 1, warmup=0)
    return exact, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    parser.add_argument("--scale", choices=PRESETS, default="cpu", help="which presets by default")
    parser.add_argument("--presets", nargs="+", help="preset names (default: by --scale)")
    parser.add_argument("--steps", type=int, help="timed training steps after 2 warm-up steps (default 5)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    parser.add_argument("--query-batch-size", type=int, help="rows per exact evaluation / sample (default 8)")
    parser.add_argument("--precisions", nargs="+", choices=DTYPES,
                        help="default: fp32 and bf16 on a GPU; fp32 on a CPU, where bf16 without native "
                             "support measured ~0.001 TFLOP/s and makes the run take hours")
    parser.add_argument("--quick", action="store_true",
                        help="small matmuls; defaults of text-cpu and digits-cpu, batch 16, 3 steps, 4 query rows")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    device = resolve(args.device)
    args.precisions = args.precisions or (list(DTYPES) if device.type == "cuda" else ["fp32"])
    presets = args.presets or (["text-cpu", "digits-cpu"] if args.quick else PRESETS[args.scale])
    if args.quick:
        args.steps, args.batch_size = args.steps or 3, args.batch_size or 16
        args.query_batch_size = args.query_batch_size or 4
    args.steps, args.query_batch_size = args.steps or 5, args.query_batch_size or 8
    sizes = [512, 1024] if args.quick else [1024, 2048, 4096] if device.type == "cpu" else [4096, 8192]
    print(machine(device))

    peak = {name: matmul_tflops(sizes, dtype, device, repeats=3) for name, dtype in DTYPES.items()}
    print(f"matmul peak (best of n×n, n in {sizes}): "
          + ", ".join(f"{name} {tflops:.3f} TFLOP/s" for name, tflops in peak.items()))

    print(f"{'preset':<14} {'prec':<5} {'D':>5} {'batch':>5} {'params':>8} {'step ms':>9} {'tokens/s':>10} "
          f"{'MFU':>6} {'exact rows/s':>12} {'sample rows/s':>13}")
    for name in presets:
        config = load_config(name)
        data = load_data(config.data)
        batch = args.batch_size or config.train.batch_size
        rows = data.split("test")[: args.query_batch_size].to(device)
        for precision in args.precisions:
            torch.manual_seed(0)
            model = build_model(config, describe(data)).to(device)
            autocast = autocast_for(precision, device)
            step = train_step_seconds(model, data, config, batch, autocast, device, args.steps)
            mfu = 3 * model.network.matmul_flops(batch) / step / (peak[precision] * 1e12)
            exact, sample = query_seconds(model, rows, autocast, device)
            params = sum(p.numel() for p in model.parameters())
            print(f"{name:<14} {precision:<5} {data.dim:>5} {batch:>5} {params / 1e6:>7.2f}M {1e3 * step:>9.1f} "
                  f"{batch * data.dim / step:>10.0f} {mfu:>6.1%} {len(rows) / exact:>12.2f} {len(rows) / sample:>13.2f}")


if __name__ == "__main__":
    main()
