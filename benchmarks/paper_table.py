"""Reproduction harness for the MAC paper's claim: MAC beats the uniform-order AO-ARM at equal compute.

For each dataset, every variant trains the same preset network for the same steps, batch
and seed(s) with `anyorder.train.train`, changing only model.* keys:

    aoarm                 uniform-order AO-ARM nodes (ARDM), no reweighting
    mac                   MAC marginal nodes with cardinality reweighting (the paper's method)
    mac-no-cr             MAC without cardinality reweighting
    mac-strided           MAC under protocol strided(S) instead of natural
    mac-protocol-targets  MAC training only the edges its protocol can use

Each run is scored with `anyorder.evaluate.evaluate` on the first --rows test rows: exact
estimator, evaluation seed 0, so every variant answers the same joint and card-uniform
marginal queries along its own protocol (aoarm is queried along `natural` like mac).
Writes results/paper_table.md and results/paper_curves.png (validation curves from each
run's metrics.csv); run directories go to runs/paper_table/ (ignored by git).

    python benchmarks/paper_table.py --quick --threads 1    # everything, ~1 min on 2 CPU cores
    python benchmarks/paper_table.py --threads 1            # ~1 hour on 2 CPU cores
    python benchmarks/paper_table.py --scale paper --device cuda --steps 100000 --seeds 3
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import matplotlib

from anyorder.build import describe, load_model
from anyorder.config import ConfigError, load_config, preset_names
from anyorder.data import DataError, load_data
from anyorder.evaluate import row_log_likelihoods, summarise
from anyorder.model import bits_per_dim
from anyorder.train import train
from common import add_threads_flag, machine, resolve, set_threads

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "aoarm": ["model.strategy=aoarm", "model.reweight=false"],
    "mac": ["model.strategy=mac", "model.reweight=true"],
    "mac-no-cr": ["model.strategy=mac", "model.reweight=false"],
    "mac-strided": ["model.strategy=mac", "model.reweight=true", "model.protocol=strided({stride})"],
    "mac-protocol-targets": ["model.strategy=mac", "model.reweight=true", "model.targets=protocol"],
}
DATA_KINDS = {"text": "text", "images": "image", "tables": "table"}
PREFERRED = ("text-cpu", "digits-cpu", "magic-cpu", "text8-paper", "cifar10-paper")


def find_preset(dataset: str, scale: str) -> tuple[str | None, str]:
    """The preset for a dataset at a scale (a preset named `*-{scale}` of that data kind)."""
    found = [name for name in preset_names() if name.endswith(f"-{scale}")
             and load_config(name).data["kind"] == DATA_KINDS[dataset]]
    if not found:
        return None, (f"no preset with data.kind '{DATA_KINDS[dataset]}' named *-{scale} in "
                      f"anyorder/presets (presets: {', '.join(preset_names())})")
    return sorted(found, key=lambda name: (name not in PREFERRED, name))[0], ""


def fitting_stride(meta: dict) -> int:
    """Images: W+1, a diagonal sweep of each channel; otherwise about √D."""
    return meta["shape"][-1] + 1 if "shape" in meta else max(2, round(math.sqrt(meta["dim"])))


def run_variant(preset: str, data, variant: str, seed: int, args, runs: Path) -> dict:
    """Train one variant on one seed and evaluate it; returns the evaluation report."""
    base = load_config(preset)
    steps = args.steps or (base.train.steps if args.scale == "paper" else 1000)
    every = max(1, steps // 10)
    overrides = [item.format(stride=args.stride or fitting_stride(describe(data))) for item in VARIANTS[variant]]
    overrides += [f"train.steps={steps}", f"train.seed={seed}", f"train.device={args.device}",
                  f"train.log_every={every}", f"train.eval_every={every}", f"train.ckpt_every={steps}",
                  f"optim.warmup={min(base.optim.warmup, steps // 5)}",
                  f"train.out={runs / preset / variant / f'seed{seed}'}"]
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.eval_rows:
        overrides.append(f"train.eval_rows={args.eval_rows}")
    config = load_config(preset, overrides)
    started = time.perf_counter()
    run_dir = train(config, progress=False, data=data)
    trained = time.perf_counter()
    model = load_model(run_dir, resolve(args.device))[0]
    per_row = row_log_likelihoods(model, data.split("test")[: args.rows], estimator="exact", seed=0, progress=False)
    report = summarise(per_row, data.dim)
    print(f"{preset} {variant} seed {seed}: {trained - started:.0f} s training, "
          f"{time.perf_counter() - trained:.0f} s exact evaluation", flush=True)
    with open(run_dir / "metrics.csv") as f:
        curve = [(int(row["step"]), float(row["valid_bpd"])) for row in csv.DictReader(f) if row["valid_bpd"]]
    return {**report, "per_row": per_row, "train_s": trained - started, "curve": curve, "steps": steps,
            "batch_size": config.train.batch_size, "protocol": config.model.protocol}


def summary(reports: list[dict], key: str) -> str:
    """One seed: value ± standard error over test rows. Several: mean ± sd across seeds."""
    values = [r[key] for r in reports]
    if len(values) == 1:
        return f"{values[0]:.4f} ± {reports[0][key + '_se']:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def paired_gap(reports: list[dict], baseline: list[dict], name: str, dim: int, continuous: bool) -> str:
    """Variant minus baseline on the same rows and queries (joint or marginal; bpd, or nats per
    row for tables). One seed: mean ± standard error of the per-row differences. Several:
    mean ± sd across seeds of seed-matched differences."""
    unit = (lambda logp: logp.double()) if continuous else (lambda logp: bits_per_dim(logp.double(), dim))
    gaps = [unit(r["per_row"][name]) - unit(b["per_row"][name]) for r, b in zip(reports, baseline)]
    if len(gaps) == 1:
        return f"{gaps[0].mean().item():+.4f} ± {gaps[0].std().item() / math.sqrt(len(gaps[0])):.4f}"
    means = [gap.mean().item() for gap in gaps]
    return f"{statistics.mean(means):+.4f} ± {statistics.stdev(means):.4f}"


def markdown_section(dataset: str, preset: str, data, results: dict[str, list[dict]]) -> str:
    continuous = data.num_classes is None
    unit, better = ("loglik", "nats per row, higher is better") if continuous else ("bpd", "bits per dimension, lower is better")
    baseline_name, baseline = next(iter(results.items()))
    lines = [f"## {dataset}: {preset} (D={data.dim}, {baseline[0]['rows']} test rows; {better})", "",
             f"| variant | protocol | joint {unit} | marginal {unit} | joint − {baseline_name} (paired) | "
             f"marginal − {baseline_name} (paired) | last valid bpd (one-step) | steps × batch | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for variant, reports in results.items():
        last = statistics.mean(r["curve"][-1][1] for r in reports)
        lines.append(f"| {variant} | {reports[0]['protocol']} | {summary(reports, f'joint_{unit}')} | "
                     f"{summary(reports, f'marginal_{unit}')} | "
                     f"{paired_gap(reports, baseline, 'joint', data.dim, continuous)} | "
                     f"{paired_gap(reports, baseline, 'marginal', data.dim, continuous)} | {last:.4f} | "
                     f"{reports[0]['steps']} × {reports[0]['batch_size']} | "
                     f"{statistics.mean(r['train_s'] for r in reports):.0f} |")
    return "\n".join(lines)


def plot_curves(all_results: dict[str, dict[str, list[dict]]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(all_results), figsize=(5 * len(all_results), 3.6), squeeze=False)
    for ax, (title, results) in zip(axes[0], all_results.items()):
        for color, (variant, reports) in enumerate(results.items()):
            for seed, report in enumerate(reports):
                steps, bpd = zip(*report["curve"])
                ax.plot(steps, bpd, color=f"C{color}", alpha=0.9, label=variant if seed == 0 else None)
        ax.set(title=title, xlabel="step", ylabel="valid bpd (one-step estimate)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATA_KINDS),
                        help="text, images, tables; NAME=PRESET picks a preset (e.g. images=mnist-cpu)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                        help="cpu: *-cpu presets, 1000 steps; paper: *-paper presets and their steps (a GPU)")
    parser.add_argument("--steps", type=int, help="training steps per run (default: 1000, or the preset's at paper scale)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    parser.add_argument("--rows", type=int, help="test rows for the exact evaluation (default 256)")
    parser.add_argument("--eval-rows", type=int, help="validation rows for the curves (default: the preset's)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds 0..N-1 per variant")
    parser.add_argument("--stride", type=int, help="S of mac-strided (default: image width + 1, else ~√D)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the table and plot go")
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "paper_table", help="run directories")
    parser.add_argument("--quick", action="store_true",
                        help="defaults of 20 steps, batch 16, 16 test and validation rows")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.steps, args.batch_size = args.steps or 20, args.batch_size or 16
        args.rows, args.eval_rows = args.rows or 16, args.eval_rows or 16
    args.rows = args.rows or 256
    device = resolve(args.device)
    args.device = str(device)
    header = [machine(device), f"command: python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}"]
    print("\n".join(header))

    sections, curves = [], {}
    for item in args.datasets:
        dataset, _, preset = item.partition("=")
        if dataset not in DATA_KINDS:
            parser.error(f"unknown dataset {dataset!r}; expected one of {', '.join(DATA_KINDS)}")
        if not preset:
            preset, why = find_preset(dataset, args.scale)
            if preset is None:
                print(f"skipping {dataset}: {why}")
                continue
        try:
            data = load_data(load_config(preset).data)
        except (ConfigError, DataError) as err:
            print(f"skipping {dataset}: preset {preset} could not load its data: {err}")
            continue
        results = {}
        for variant in args.variants:
            results[variant] = [run_variant(preset, data, variant, seed, args, args.runs) for seed in range(args.seeds)]
        sections.append(markdown_section(dataset, preset, data, results))
        curves[f"{dataset} ({preset})"] = results
    if not sections:
        sys.exit("no dataset could be run")

    note = ("Same network, steps, batch and seeds for every variant; the evaluation uses the same test rows "
            "and the same marginal masks (seed 0) for every variant. ± is the standard error over test rows "
            f"(one seed) or the standard deviation across seeds ({args.seeds} here). The differences between "
            "variants are paired (same rows): the gap columns give each variant minus the first one, "
            "± the standard error of the per-row differences (one seed) or the sd across seeds.")
    table = "\n\n".join(["# MAC vs the uniform-order AO-ARM at equal compute", *header, note, *sections]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_table.md").write_text(table)
    plot_curves(curves, args.out / "paper_curves.png")
    print("\n" + table)
    print(f"wrote {args.out / 'paper_table.md'} and {args.out / 'paper_curves.png'}")


if __name__ == "__main__":
    main()
