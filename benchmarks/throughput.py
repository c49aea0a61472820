"""How fast anyorder runs on this machine, and how close to the hardware's matmul peak.

(a) peak: the best TFLOP/s of square fp32 and bf16 matmuls, and whether `precision: auto`
    finds native bf16 here (`anyorder.precision.bf16_native`);
(b) training: tokens (variables) per second of a full step as `anyorder.train` takes it
    (batch, training nodes or paths, forward + backward under the precision, clipping, the
    preset's optimiser), and model FLOPs utilisation = 3 × the network's forward
    `matmul_flops(batch)` per step (forward + backward ≈ 3 forwards) / step time / the
    measured peak of that precision;
(c) queries: exact joint log-likelihood (`log_prob(estimator="exact")`, D passes) and
    unconditional sampling (`sample` with an empty mask, D passes), in rows per second; for
    node networks also the exact likelihood with full passes (every position through the last
    block and the head, as before `NodeNetwork.forward_at`), timed in turns with the other,
    their speed ratio (target 1.5x) and the largest difference of the two log-likelihoods;
(d) bf16 over fp32 training speed per model. The official MAC code trains in fp32 at about
    our fp32 speed, so this ratio stands for "speed-up over the paper's code" (target 2.5x);
(e) attention paths at the shapes of the width-256, D=250 text model and of text-cpu, forward + backward:
    torch's scaled_dot_product_attention (its default CPU kernel and its math backend) and
    plain matmul-softmax-matmul, without a mask and with an additive [H, D, D] bias.
Models are randomly initialised: speed does not depend on training.

    python benchmarks/throughput.py --quick --threads 1          # ~1 min on 2 CPU cores
    python benchmarks/throughput.py --threads 1                  # text-cpu, digits-cpu, text-250; ~15 min
    python benchmarks/throughput.py --device cuda --scale paper  # the text8 and CIFAR-10 paper models
"""

from __future__ import annotations

import argparse
import math
import statistics
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from anyorder.build import build_model, describe
from anyorder.config import load_config
from anyorder.data import load_data
from anyorder.nets import NodeNetwork
from anyorder.optim import optimizer_for
from anyorder.precision import autocast_for, bf16_native
from anyorder.train import Objective, train_step, training_batch
from common import CLOCKS, add_clock_flag, add_threads_flag, machine, median_seconds, resolve, set_threads, sync

# A model is a preset plus overrides; "text-250" is the paper's sequence length with a
# width-256 Transformer (4 layers, 4 heads, MLP 1024, plain attention), small enough for a CPU.
MODELS = {"text-250": ("text-cpu", ["data.seq_len=250", "net.width=256", "net.depth=4", "net.heads=4",
                                    "net.mlp=1024", "net.attention_bias=none", "train.batch_size=32"])}
PRESETS = {"cpu": ["text-cpu", "digits-cpu", "text-250"], "paper": ["text8-paper", "cifar10-paper"]}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGET_SPEEDUP = 2.5
QUERY_TARGET = 1.5


def matmul_tflops(sizes: list[int], dtype: torch.dtype, device: torch.device, repeats: int, clock: str) -> float:
    """The best TFLOP/s of an n×n by n×n matmul over the given sizes n."""
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = max(best, 2 * n ** 3 / median_seconds(lambda: a @ b, device, repeats, clock=clock) / 1e12)
    return best


def train_step_seconds(model, data, config, batch: int, autocast, device, steps: int, clock: str) -> float:
    """Median time of one training step: `anyorder.train`'s own step function."""
    o = config.optim
    optimizer = optimizer_for(model, o)
    gen = torch.Generator().manual_seed(0)
    objective = Objective(model)
    model.train()

    def step():
        x, node = training_batch(data, model, batch, gen)
        train_step(objective, optimizer, x.to(device), node.to(device), o.lr, o.clip, autocast)

    return median_seconds(step, device, steps, warmup=2, clock=clock)


class EveryPosition(NodeNetwork):
    """A node network behind the base class's `forward_at`: a full pass, then one variable per
    row: how queries ran before networks computed their last block and head only where needed."""

    def __init__(self, network: NodeNetwork):
        super().__init__()
        self.network, self.dim = network, network.dim

    def forward(self, x_in, observed):
        return self.network(x_in, observed)


@contextmanager
def every_position(model):
    """Queries of `model` inside the block run full passes (`EveryPosition`)."""
    network = model.network
    model.network = EveryPosition(network)
    try:
        yield model
    finally:
        model.network = network


def query_seconds(model, rows: torch.Tensor, autocast, device, clock: str, repeats: int) -> tuple[dict, float]:
    """Seconds for an exact joint log-likelihood of `rows` (as the model runs it, "exact", and,
    for node networks, with full passes, "exact-full", timed in turns) and an unconditional
    sample ("sample"), medians over `repeats`; and the largest |difference| of the two
    log-likelihoods in nats (NaN without full passes)."""
    model.eval()
    with torch.no_grad():    # output layers start at zero: nudge every weight so outputs vary with the input
        gen = torch.Generator(device=device).manual_seed(0)
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, device=device, dtype=p.dtype))
    exact = lambda: model.log_prob(rows, estimator="exact")

    def full():
        with every_position(model):
            return exact()

    ways = {"exact": exact, "exact-full": full} if isinstance(model.network, NodeNetwork) else {"exact": exact}
    times = {name: [] for name in ways}
    difference = float("nan")
    with torch.no_grad(), autocast:
        for _ in range(repeats):
            values = {}
            for name, fn in ways.items():
                sync(device)
                start = CLOCKS[clock]()
                values[name] = fn()
                sync(device)
                times[name].append(CLOCKS[clock]() - start)
            if "exact-full" in values:
                difference = (values["exact"] - values["exact-full"]).abs().max().item()
        seconds = {name: statistics.median(t) for name, t in times.items()}
        seconds["sample"] = median_seconds(lambda: model.sample(rows, torch.zeros_like(rows, dtype=torch.bool)),
                                           device, 1, warmup=0, clock=clock)
    return seconds, difference


def attention_seconds(path: str, dtype: torch.dtype, bias: bool, batch: int, heads: int, dim: int,
                      head_dim: int, device, repeats: int, clock: str) -> float:
    """Median seconds of attention forward + backward on `[batch, heads, dim, head_dim]` inputs."""
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, dim, head_dim, generator=gen, device=device, dtype=dtype)
               .requires_grad_() for _ in range(3))
    distance = (torch.arange(dim, device=device)[:, None] - torch.arange(dim, device=device)).abs()
    mask = -distance.to(dtype).expand(heads, dim, dim) if bias else None

    def attend():
        if path == "manual":
            scores = q @ k.transpose(-1, -2) * (1 / math.sqrt(head_dim))
            out = torch.softmax(scores if mask is None else scores + mask, -1) @ v
        elif path == "sdpa-math":
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.backward(torch.ones_like(out))

    return median_seconds(attend, device, repeats, clock=clock)


def model_config(name: str):
    preset, overrides = MODELS.get(name, (name, []))
    return load_config(preset, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    parser.add_argument("--scale", choices=PRESETS, default="cpu", help="which presets by default")
    parser.add_argument("--presets", nargs="+", help=f"preset names or {', '.join(MODELS)} (default: by --scale)")
    parser.add_argument("--steps", type=int, help="timed training steps after 2 warm-up steps (default 5)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    parser.add_argument("--query-batch-size", type=int, help="rows per exact evaluation / sample (default 8)")
    parser.add_argument("--query-repeats", type=int, default=3, help="exact evaluations per way, timed in turns")
    parser.add_argument("--no-training", action="store_true", help="skip (b) and (d), the training steps")
    parser.add_argument("--precisions", nargs="+", choices=DTYPES,
                        help="default: fp32, and bf16 where the device multiplies bf16 natively (without "
                             "native kernels a CPU's bf16 matmul runs ~0.001 TFLOP/s and the run takes hours)")
    parser.add_argument("--no-attention", action="store_true", help="skip (e), the attention paths")
    parser.add_argument("--quick", action="store_true",
                        help="small matmuls; defaults of text-cpu and digits-cpu, batch 16, 3 steps, 4 query rows")
    add_threads_flag(parser)
    add_clock_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    device = resolve(args.device)
    native = bf16_native(device)
    args.precisions = args.precisions or (list(DTYPES) if native else ["fp32"])
    presets = args.presets or (["text-cpu", "digits-cpu"] if args.quick else PRESETS[args.scale])
    if args.quick:
        args.steps, args.batch_size = args.steps or 3, args.batch_size or 16
        args.query_batch_size = args.query_batch_size or 4
    args.steps, args.query_batch_size = args.steps or 5, args.query_batch_size or 8
    sizes = [512, 1024] if args.quick else [1024, 2048, 4096] if device.type == "cpu" else [4096, 8192]
    print(machine(device) + f", {args.clock} clock")

    peak = {name: matmul_tflops(sizes, dtype, device, 3, args.clock) for name, dtype in DTYPES.items()}
    print(f"matmul peak (best of n×n, n in {sizes}): "
          + ", ".join(f"{name} {tflops:.3f} TFLOP/s" for name, tflops in peak.items())
          + f"; native bf16: {'yes' if native else 'no'} (precision: auto -> {'bf16' if native else 'fp32'})")

    print(f"{'preset':<14} {'prec':<5} {'D':>5} {'batch':>5} {'params':>8} {'step ms':>9} {'tokens/s':>10} "
          f"{'MFU':>6} {'exact rows/s':>12} {'full passes':>11} {'×':>5} {'|Δ log p|':>9} {'sample rows/s':>13}")
    tokens_per_s, query_speedup = {}, {}
    for name in presets:
        config = model_config(name)
        data = load_data(config.data)
        batch = args.batch_size or config.train.batch_size
        rows = data.split("test")[: args.query_batch_size].to(device)
        for precision in args.precisions:
            torch.manual_seed(0)
            model = build_model(config, describe(data)).to(device)
            autocast = autocast_for(precision, device)
            step = float("nan") if args.no_training else train_step_seconds(
                model, data, config, batch, autocast, device, args.steps, args.clock)
            mfu = 3 * model.network.matmul_flops(batch) / step / (peak[precision] * 1e12)
            seconds, difference = query_seconds(model, rows, autocast, device, args.clock, args.query_repeats)
            full = seconds.get("exact-full", float("nan"))
            query_speedup[name, precision] = full / seconds["exact"]
            params = sum(p.numel() for p in model.parameters())
            tokens_per_s[name, precision] = batch * data.dim / step
            print(f"{name:<14} {precision:<5} {data.dim:>5} {batch:>5} {params / 1e6:>7.2f}M {1e3 * step:>9.1f} "
                  f"{batch * data.dim / step:>10.0f} {mfu:>6.1%} {len(rows) / seconds['exact']:>12.2f} "
                  f"{len(rows) / full:>11.2f} {full / seconds['exact']:>5.2f} {difference:>9.1e} "
                  f"{len(rows) / seconds['sample']:>13.2f}", flush=True)

    print(f"exact-likelihood speed-up of last-block-only passes over full passes (target {QUERY_TARGET}x):")
    for (name, precision), ratio in query_speedup.items():
        verdict = "meets" if ratio >= QUERY_TARGET else f"misses by {QUERY_TARGET - ratio:.2f}x"
        print(f"  {name:<14} {precision:<5} {ratio:.2f}x ({verdict} the target)")

    if {"fp32", "bf16"} <= set(args.precisions) and not args.no_training:
        print(f"training speed-up of bf16 over fp32 (≈ over the official fp32 code; target {TARGET_SPEEDUP}x):")
        for name in presets:
            ratio = tokens_per_s[name, "bf16"] / tokens_per_s[name, "fp32"]
            verdict = "meets" if ratio >= TARGET_SPEEDUP else f"misses by {TARGET_SPEEDUP - ratio:.2f}x"
            print(f"  {name:<14} {ratio:.2f}x ({verdict} the target)")

    if not args.no_attention:
        for shape in (dict(batch=args.batch_size or 32, heads=4, dim=250, head_dim=64),     # text-250
                      dict(batch=args.batch_size or 64, heads=4, dim=64, head_dim=32)):     # text-cpu
            print(f"attention forward + backward, ms ({', '.join(f'{k} {v}' for k, v in shape.items())}):")
            print(f"  {'mask':<5} {'prec':<5} {'sdpa':>9} {'sdpa-math':>10} {'manual':>9}")
            for bias in (False, True):
                for precision in args.precisions:
                    times = [attention_seconds(path, DTYPES[precision], bias, **shape, device=device, repeats=args.steps,
                                               clock=args.clock) for path in ("sdpa", "sdpa-math", "manual")]
                    print(f"  {'bias' if bias else 'none':<5} {precision:<5} "
                          + " ".join(f"{1e3 * t:>{w}.1f}" for t, w in zip(times, (9, 10, 9))), flush=True)


if __name__ == "__main__":
    main()
