"""Continuous tables: MAC's AO-ARM and ACE against a diagonal Gaussian, and imputation.

On a table preset's data (default `magic-cpu`: MAGIC, all 11 columns) it trains
  - the mixture-of-Gaussians AO-ARM (ACE's proposal network trained the MAC way), and
  - ACE (the same proposal plus an energy network, trained jointly),
with the same seed (and the same steps with --steps; ACE's energy warm-up then keeps its
share of the run), and prints on the first --rows test rows, each with its standard error
over rows (nats per row, higher is better), at ACE's settings (the ACE preset's: 20
importance samples in training, `model.eval_importance` = 20000 in every query):
  (a) joint and card-uniform marginal log-likelihoods (evaluation seed 0: the same masks
      for every model) of the diagonal Gaussian fitted to the train split, the AO-ARM, and
      ACE's proposal and energy conditionals; the gaps to the Gaussian are paired (same
      rows, same masks), so they are given with the standard error of the differences;
  (b) ACE's energy joint log-likelihood as the number of importance samples grows, up to
      ACE's evaluation count, on the first --sweep-rows rows;
  (c) imputation NRMSE on the test rows with 20% of cells hidden: column mean, mean of 10
      AO-ARM draws, AO-ARM conditional mean, ACE energy conditional mean.
An energy query scores 20001 candidates per edge (~0.3 M/s on one busy core), so the rows
are few by default.

    python benchmarks/tables.py --threads 1 --steps 2000 --drop target   # ~45 min on 2 busy CPU cores
    python benchmarks/tables.py --threads 1                          # preset steps
    python benchmarks/tables.py --quick --threads 1                  # 50 steps, 50 rows; a smoke run
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from anyorder.build import load_model
from anyorder.config import load_config
from anyorder.data import load_data
from anyorder.evaluate import marginal_masks, row_log_likelihoods
from anyorder.impute import impute, nrmse
from anyorder.train import train
from common import add_threads_flag, machine, resolve, set_threads

HERE = Path(__file__).resolve().parent


def diagonal_gaussian(train_rows: torch.Tensor, rows: torch.Tensor, masks: torch.Tensor) -> dict:
    """Per-row joint and masked-marginal log-likelihoods of independent Gaussians fitted
    (maximum likelihood) to the train split: the baseline any density model must beat."""
    train_rows = train_rows.double()
    normal = torch.distributions.Normal(train_rows.mean(0), train_rows.std(0, unbiased=False))
    per_cell = normal.log_prob(rows.double())
    return {"joint": per_cell.sum(-1), "marginal": (per_cell * masks).sum(-1)}


def per_row(net, rows: torch.Tensor, batch_size: int = 256, **options) -> dict:
    """Exact joint and marginal log-likelihoods per row, `evaluate`'s queries (seed 0)."""
    return {name: v.double() for name, v in
            row_log_likelihoods(net, rows, batch_size=batch_size, progress=False, **options).items()}


def mean_se(values: torch.Tensor) -> str:
    return f"{values.mean().item():8.3f} ± {values.std().item() / math.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="magic-cpu", help="a table preset (model.kind aoarm)")
    parser.add_argument("--ace-preset", default="magic-ace-cpu", help="the ACE preset on the same data")
    parser.add_argument("--drop", nargs="*", default=[], help="columns to leave out, e.g. target")
    parser.add_argument("--numeric", nargs="*", default=["target"],
                        help="columns modelled as numbers whatever their values (default: MAGIC's binary "
                             "target, which would be inferred categorical; ACE models numbers only)")
    parser.add_argument("--steps", type=int, help="training steps (default: the presets')")
    parser.add_argument("--rows", type=int, default=300, help="test rows to score")
    parser.add_argument("--sweep-rows", type=int, default=100, help="test rows of (b)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "tables")
    parser.add_argument("--quick", action="store_true", help="50 steps, 50 rows, 20 sweep rows")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.steps, args.rows, args.sweep_rows = args.steps or 50, min(args.rows, 50), min(args.sweep_rows, 20)
    device = resolve(args.device)
    print(machine(device))

    overrides = [f"train.seed={args.seed}", f"train.device={device}"]
    overrides += [f"data.drop={args.drop}"]          # both models see the same columns
    overrides += [f"data.numeric={[c for c in args.numeric if c not in args.drop]}"]
    overrides += [f"train.steps={args.steps}", f"optim.warmup={min(100, args.steps // 5)}",
                  f"train.eval_every={args.steps}", f"train.ckpt_every={args.steps}"] if args.steps else []
    models, trained, data = {}, [], None
    ace = load_config(args.ace_preset)
    share = ace.model.energy_warmup / ace.train.steps       # the energy warm-up's share of the run
    for name, preset in (("ao-arm", args.preset), ("ace", args.ace_preset)):
        warmup = [f"model.energy_warmup={round(share * args.steps)}"] if args.steps and name == "ace" else []
        config = load_config(preset, overrides + warmup + [f"train.out={args.runs / name}"])
        data = load_data(config.data) if data is None else data       # both models train on the ao-arm's data
        started = time.perf_counter()
        models[name] = load_model(train(config, progress=False, data=data), device)[0]
        settings = (f" (energy warm-up {config.model.energy_warmup} steps, energy sees x_o and mask: "
                    f"{config.model.energy_observed})" if name == "ace" else "")
        trained.append(f"{name} {config.train.steps} steps × {config.train.batch_size}{settings} in "
                       f"{time.perf_counter() - started:.0f} s")
    columns = data.meta["columns"]
    rows = data.split("test")[: args.rows].to(device)
    masks = marginal_masks(len(rows), data.dim, seed=0)
    print(f"data: {data.meta['source']}, D={data.dim} ({', '.join(columns)}), {len(rows)} test rows; "
          f"trained {', '.join(trained)}")

    scores = {"diagonal Gaussian": diagonal_gaussian(data.split("train"), rows.cpu(), masks),
              "MAC AO-ARM (mixture of Gaussians)": per_row(models["ao-arm"], rows),
              "ACE proposal (MAC masks)": per_row(models["ace"], rows, model="proposal"),
              f"ACE energy ({models['ace'].eval_importance} importance samples)":
                  per_row(models["ace"], rows, batch_size=32, model="energy")}
    base = scores["diagonal Gaussian"]
    print("\n(a) test log-likelihood, nats per row (higher is better); gap = model − Gaussian, paired")
    print(f"{'model':38s} {'joint':>16s} {'marginal':>16s} {'joint gap':>16s} {'marginal gap':>16s}")
    for name, s in scores.items():
        print(f"{name:38s} {mean_se(s['joint']):>16s} {mean_se(s['marginal']):>16s} "
              f"{mean_se(s['joint'] - base['joint']):>16s} {mean_se(s['marginal'] - base['marginal']):>16s}")

    few = rows[: args.sweep_rows]
    proposal = per_row(models["ace"], few, model="proposal")["joint"]
    print(f"\n(b) ACE energy joint log-likelihood vs importance samples K on {len(few)} rows (proposal: "
          f"{mean_se(proposal)}); log Ẑ is biased low, so small K overstates the likelihood")
    for k in sorted({1, 20, 200, 2000, models["ace"].eval_importance}):
        joint = per_row(models["ace"], few, batch_size=32, model="energy", num_importance=k)["joint"]
        print(f"  K = {k:5d}: {mean_se(joint)}", flush=True)

    print("\n(c) imputation NRMSE on the test rows, 20% of cells hidden (lower is better)")
    gen = torch.Generator().manual_seed(args.seed)
    hidden = torch.rand(rows.shape, generator=gen).to(device) < 0.2
    hidden[hidden.all(-1), 0] = False
    holes = torch.where(hidden, float("nan"), rows)
    impute_gen = torch.Generator(device=device).manual_seed(args.seed)
    fills = {"column mean (train)": torch.where(hidden, data.split("train").to(device).mean(0), rows),
             "AO-ARM, mean of 10 draws": impute(models["ao-arm"], holes, num_samples=10, generator=impute_gen),
             "AO-ARM, conditional mean": impute(models["ao-arm"], holes, reduce="conditional-mean"),
             "ACE energy, conditional mean": impute(models["ace"], holes, reduce="conditional-mean",
                                                     generator=impute_gen)}
    for name, filled in fills.items():
        print(f"  {name:30s} {nrmse(rows, filled, hidden).item():.3f}")


if __name__ == "__main__":
    main()
