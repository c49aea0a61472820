"""Path network vs bidirectional node network: quality at equal steps, and query speed.

(a) Quality on Shakespeare (text-cpu's data, budget and seed). Three models train for the
    same steps and batch with `anyorder.train.train`:
        bidirectional   text-cpu: the bidirectional Transformer, MAC nodes
        path-mac        text-cpu-path under `natural` at text-cpu's batch of 64: the
                        PathTransformer on joint / marginal / conditional paths
        left-to-right   the same with model.path_mix=[1,0,0]: full natural paths only
        natural-strided the text-cpu-path preset itself (128 rows a step, half of them
                        natural paths, half strided(K) step budgets)
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
(c) With --coding RUN (a trained path run): compression of the first --coding-chars test
    characters, exact (K = D) and in D/4 steps, by the path network (key/value cache) and by
    a randomly initialised node network of text-cpu's size (speed does not depend on
    training): bytes out vs the exact code length −log2 p / 8, and KB/s of compress and
    decompress on this process's CPU clock. Then the one-pass conditional mean (K = 1) of
    a table (--table-config, half the cells observed) with a path network and with the
    preset's node network (both random weights): rows/s.

    python benchmarks/path_network.py --threads 1 --variants path-mac --run path-mac=runs/text-cpu-path \
        --coding runs/text-cpu-path --speed-dims        # the path run alone, its coding and table speed
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from anyorder import lattice
from anyorder import compress as coding_module
from anyorder.build import build_model, describe, load_model
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

SAME_BATCH = ["model.protocol=natural", "train.batch_size=64"]     # text-cpu's batch, one order
VARIANTS = {
    "bidirectional": ("text-cpu", []),
    "path-mac": ("text-cpu-path", SAME_BATCH),
    "left-to-right": ("text-cpu-path", SAME_BATCH + ["model.path_mix=[1,0,0]"]),
    "natural-strided": ("text-cpu-path", []),
}


def mean_and_se(values: torch.Tensor) -> list[float]:
    """[mean, standard error] of per-row figures (in float64)."""
    values = values.double()
    return [values.mean().item(), values.std().item() / math.sqrt(len(values))]


def mean_se(values: torch.Tensor) -> str:
    return "{:.3f} ± {:.3f}".format(*mean_and_se(values))


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
    names = list(args.variants) + [name for name in args.run if name not in args.variants]
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
    base = results.get("bidirectional")
    for name, got in results.items():
        deltas = [mean_se(got[q] - base[q]) if base else "-" for q in ("joint", "marginal", "infill")]
        print(f"{name:<16} {mean_se(got['joint']):>15} {mean_se(got['marginal']):>15} {mean_se(got['infill']):>15} "
              + " ".join(f"{d:>16}" for d in deltas))
    if args.record:
        record(args.record, results)
    print("\ninfilling, half the characters observed ('_' = hidden):")
    for i, row in enumerate(rows[:3].cpu()):
        shown = "".join(c if o else "_" for c, o in zip(decode(row), given[i].cpu()))
        print(f"  {'observed':<14} |{shown}|")
        for name in results:
            print(f"  {name:<14} |{infills[name][i]}|")


RECORD = Path(__file__).resolve().parent / "results" / "path_network.json"


def record(title: str, results: dict) -> None:
    """Add this run's table (bpd mean and SE per model and query) to path_network.json under
    `title`, replacing a run of the same title: what plots.py draws."""
    runs = json.loads(RECORD.read_text()) if RECORD.is_file() else []
    entry = {"title": title, "command": "python benchmarks/path_network.py " + " ".join(sys.argv[1:]),
             "models": {name: {query: mean_and_se(got[query]) for query in ("joint", "marginal", "infill")}
                        for name, got in results.items()}}
    runs = [run for run in runs if run["title"] != title] + [entry]
    RECORD.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"recorded as {title!r} in {RECORD}")


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


def _cpu_seconds(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


@torch.no_grad()
def coding(args, device) -> None:
    path_model, config, meta = load_model(args.coding, device)
    torch.manual_seed(0)
    node_model = build_model(load_config("text-cpu"), meta).to(device).eval()
    rows = load_data(config.data).split("test").reshape(-1)[: args.coding_chars]
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "test.txt"
        source.write_text(decode(rows))
        content = coding_module.read_content(source, meta)
    dim = meta["dim"]
    seen = torch.arange(dim) < content.lengths.unsqueeze(-1)
    print(f"\ncompression of {len(rows)} test characters (one thread, CPU clock), batch 64")
    print(f"{'network':<14} {'K':>4} {'bytes':>8} {'exact bytes':>12} {'overhead':>9} {'compress KB/s':>14} "
          f"{'decompress KB/s':>16}")
    for name, model in (("path", path_model), ("bidirectional", node_model)):
        for steps in (dim, dim // 4):
            policy = None if steps == dim else coding_module.uniform_policy(dim, steps)
            print_ = coding_module.model_fingerprint(model, config, meta)
            blob, seconds_in = _cpu_seconds(lambda: coding_module.compress(model, print_, content, 64, 1, policy=policy))
            back, seconds_out = _cpu_seconds(lambda: coding_module.decompress(model, print_, blob, dim))
            assert torch.equal(back.rows, content.rows.cpu()), "round trip failed"
            logp = model.log_prob(content.rows.to(device), seen.to(device), policy=policy)
            exact = -logp.double().sum().item() / math.log(2) / 8
            kb = len(rows) / 1000
            print(f"{name:<14} {steps:>4} {len(blob):>8} {exact:>12.0f} {100 * (len(blob) / exact - 1):>8.2f}% "
                  f"{kb / seconds_in:>14.2f} {kb / seconds_out:>16.2f}", flush=True)
    table_speed(args, device)


@torch.no_grad()
def table_speed(args, device) -> None:
    """`conditional_mean` rows/s on a table: a path network (K = 1, one pass) vs the preset's node network."""
    config = load_config(args.table_config)
    data = load_data(config.data)
    x = data.split("test")[: args.table_rows].to(device)
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    print(f"\nconditional mean on {len(x)} rows of {args.table_config} (half the cells observed), one thread")
    for name, overrides in (("node (preset)", []), ("path", ["net.kind=path-transformer", "net.width=128"])):
        torch.manual_seed(0)
        setup = load_config(args.table_config, overrides)
        model = build_model(setup, describe(data)).to(device).eval()
        _, seconds = _cpu_seconds(lambda: model.conditional_mean(x, observed.to(device)))
        print(f"  {name:<14} {setup.net}: {len(x) / seconds:.0f} rows/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every variant (text-cpu's 1500)")
    parser.add_argument("--rows", type=int, default=None, help="test rows to score (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per evaluation batch")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="use a trained run for NAME (bidirectional, path-mac, left-to-right, or a new name)")
    parser.add_argument("--out", default="runs/path_network", help="where trained runs go")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS)[:3], choices=list(VARIANTS),
                        help="which variants to score (default: the first three; natural-strided trains 128 rows a step)")
    parser.add_argument("--coding", metavar="RUN", help="a trained path run: measure compression (part c)")
    parser.add_argument("--coding-chars", type=int, default=64 * 64, help="test characters to compress")
    parser.add_argument("--table-config", default="magic-cpu", help="table preset of the conditional-mean timing")
    parser.add_argument("--table-rows", type=int, default=2048, help="table rows of the conditional-mean timing")
    parser.add_argument("--speed-dims", type=int, nargs="*", default=[64, 250], help="D for the speed part ('' = skip)")
    parser.add_argument("--speed-rows", type=int, default=4, help="rows per timed query")
    parser.add_argument("--skip-quality", action="store_true", help="only the speed part")
    parser.add_argument("--record", metavar="TITLE",
                        help="add the quality table to results/path_network.json under TITLE (drawn by plots.py)")
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
    if args.coding:
        coding(args, device)


if __name__ == "__main__":
    main()
