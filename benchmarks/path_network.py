"""Path network vs bidirectional node network: quality at equal steps, and query speed.

(a) Quality on Shakespeare (text-cpu's data, budget and seed). Three models train for the
    same steps and batch with `anyorder.train.train`:
        bidirectional   text-cpu: the bidirectional Transformer, MAC nodes
        path-mac        text-cpu-path: the PathTransformer on joint / marginal / conditional paths
        left-to-right   text-cpu-path with model.path_mix=[1,0,0]: full natural paths only
    On the first --rows test rows each answers, exactly and along `natural`: the joint,
    the card-uniform marginal queries of `evaluate` (seed 0), and infilling with half the
    characters observed (a uniform set of D/2 per row, seed 1), log p(x_u | x_o) normalised
    by D. Figures are bpd ± standard error over rows, plus the paired difference to the
    bidirectional model; training seconds per run are printed (the runs share the machine).
    A few infills per model are printed for reading. `--run NAME=DIR` reuses a trained run
    instead of training NAME (another name adds that run as an extra row).
(b) Speed with randomly initialised width-256, depth-4 models (speed does not depend on
    training): rows/s of an exact joint log-likelihood and of unconditional sampling at
    D = 64 and D = 250, path vs bidirectional, side by side on the same rows. On a shared
    CPU, `--threads 1 --clock cpu` times this process's CPU time, leaving out the time
    other jobs held the core.

    python benchmarks/path_network.py --threads 1 --steps 20 --rows 32 --speed-dims 64   # smoke test
    python benchmarks/path_network.py --threads 1 --skip-quality --speed-rows 2 --clock cpu   # speed only
    python benchmarks/path_network.py --threads 1                  # 1500 steps: hours on a busy CPU
    python benchmarks/path_network.py --threads 1 --run bidirectional=runs/text-cpu --run path-mac=runs/text-cpu-path
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from anyorder import lattice
from anyorder.build import load_model
from anyorder.config import load_config
from anyorder.data import load_data
from anyorder.data.text import decode
from anyorder.evaluate import row_log_likelihoods
from anyorder.heads import CategoricalHead
from anyorder.model import AnyOrderModel, bits_per_dim
from anyorder.nets.path_transformer import PathTransformer
from anyorder.nets.transformer import Transformer
from anyorder.train import train
from common import add_clock_flag, add_threads_flag, machine, median_seconds, resolve, set_threads

VARIANTS = {
    "bidirectional": ("text-cpu", []),
    "path-mac": ("text-cpu-path", []),
    "left-to-right": ("text-cpu-path", ["model.path_mix=[1,0,0]"]),
}


def mean_se(values: torch.Tensor) -> str:
    values = values.double()
    return f"{values.mean().item():.3f} ± {values.std().item() / math.sqrt(len(values)):.3f}"


def trained_run(name: str, args) -> Path:
    """The run directory of a variant: reused from --run, else trained here."""
    if name in args.run:
        return Path(args.run[name])
    preset, overrides = VARIANTS[name]
    out = Path(args.out) / name
    overrides = overrides + [f"train.steps={args.steps}", f"train.out={out}", f"train.device={args.device}"]
    return train(load_config(preset, overrides), progress=not args.quiet)


def train_seconds(run: Path) -> str:
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return f"{float(rows[-1]['elapsed_s']):.0f} s / {rows[-1]['step']} steps" if rows else "?"


@torch.no_grad()
def per_row_bpd(model: AnyOrderModel, rows: torch.Tensor, given: torch.Tensor, batch: int, quiet: bool) -> dict:
    """Per-row bpd `[N]` of the joint, the card-uniform marginals and the 50% infilling."""
    dim = rows.shape[1]
    found = row_log_likelihoods(model, rows, batch_size=batch, progress=not quiet)
    infill = torch.cat([model.conditional_log_prob(x, ~o, o) for x, o in zip(rows.split(batch), given.split(batch))])
    return {name: bits_per_dim(logp, dim) for name, logp in
            {"joint": found["joint"], "marginal": found["marginal"], "infill": infill}.items()}


def quality(args, device) -> None:
    data = load_data(load_config("text-cpu").data)
    rows = data.split("test")[: args.rows].to(device)
    dim = rows.shape[1]
    given = lattice.uniform_subsets(torch.full((len(rows),), dim // 2), dim,
                                    torch.Generator().manual_seed(1)).to(device)
    names = list(VARIANTS) + [name for name in args.run if name not in VARIANTS]
    results, infills = {}, {}
    for name in names:
        run = trained_run(name, args)
        model = load_model(run, device)[0]
        results[name] = per_row_bpd(model, rows, given, args.batch_size, args.quiet)
        filled = model.sample(rows[:3], given[:3], generator=torch.Generator(device=device).manual_seed(0))
        infills[name] = [decode(row.cpu()) for row in filled]
        print(f"{name}: {run} ({train_seconds(run)} of training)", flush=True)
    print(f"\ntest rows: {len(rows)} of D = {dim}; bpd ± SE (lower is better); Δ = paired difference to bidirectional")
    print(f"{'model':<16} {'joint':>15} {'marginal':>15} {'infill 50%':>15} {'Δ joint':>16} {'Δ marginal':>16} {'Δ infill':>16}")
    base = results["bidirectional"]
    for name, got in results.items():
        deltas = [mean_se(got[q] - base[q]) for q in ("joint", "marginal", "infill")]
        print(f"{name:<16} {mean_se(got['joint']):>15} {mean_se(got['marginal']):>15} {mean_se(got['infill']):>15} "
              + " ".join(f"{d:>16}" for d in deltas))
    print("\ninfilling, half the characters observed ('_' = hidden):")
    for i, row in enumerate(rows[:3].cpu()):
        shown = "".join(c if o else "_" for c, o in zip(decode(row), given[i].cpu()))
        print(f"  {'observed':<14} |{shown}|")
        for name in results:
            print(f"  {name:<14} |{infills[name][i]}|")


def speed(args, device) -> None:
    print(f"\nquery speed, width 256, depth 4, heads 4, {args.speed_rows} rows, random weights, fp32, "
          f"{args.clock} clock")
    print(f"{'D':>5} {'network':<16} {'exact rows/s':>13} {'sample rows/s':>14}")
    for dim in args.speed_dims:
        x = torch.randint(0, 27, (args.speed_rows, dim), generator=torch.Generator().manual_seed(0)).to(device)
        empty = torch.zeros_like(x, dtype=torch.bool)
        figures = {}
        for name, net in (("bidirectional", Transformer), ("path", PathTransformer)):
            torch.manual_seed(0)
            network = net(dim, 27, 27, width=256, depth=4, heads=4, attention_bias="alibi")
            model = AnyOrderModel(network, CategoricalHead(27)).to(device).eval()
            with torch.no_grad():
                repeats = 3 if name == "path" else 1      # a path query takes a second, a node one minutes
                exact = median_seconds(lambda: model.log_prob(x), device, repeats, int(name == "path"), args.clock)
                sample = median_seconds(lambda: model.sample(x, empty), device, repeats, int(name == "path"),
                                        args.clock)
            figures[name] = (len(x) / exact, len(x) / sample)
            print(f"{dim:>5} {name:<16} {figures[name][0]:>13.3g} {figures[name][1]:>14.3g}", flush=True)
        ratio = [p / b for p, b in zip(figures["path"], figures["bidirectional"])]
        print(f"{dim:>5} {'path / bidir.':<16} {ratio[0]:>12.0f}× {ratio[1]:>13.0f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every variant (text-cpu's 1500)")
    parser.add_argument("--rows", type=int, default=None, help="test rows to score (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per evaluation batch")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="use a trained run for NAME (bidirectional, path-mac, left-to-right, or a new name)")
    parser.add_argument("--out", default="runs/path_network", help="where trained runs go")
    parser.add_argument("--speed-dims", type=int, nargs="*", default=[64, 250], help="D for the speed part ('' = skip)")
    parser.add_argument("--speed-rows", type=int, default=4, help="rows per timed query")
    parser.add_argument("--skip-quality", action="store_true", help="only the speed part")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_flag(parser)
    add_clock_flag(parser)
    args = parser.parse_args()
    bad = [item for item in args.run if "=" not in item]
    if bad:
        parser.error(f"--run needs NAME=DIR, got {bad[0]!r}")
    args.run = dict(item.split("=", 1) for item in args.run)
    set_threads(args.threads)
    device = resolve(args.device)
    print(machine(device), flush=True)
    if not args.skip_quality:
        quality(args, device)
    speed(args, device)


if __name__ == "__main__":
    main()
