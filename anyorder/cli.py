"""`anyorder` command line: train, eval, sample, impute — one CLI for every data type."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import budget, checkpoint
from .build import load_model
from .config import ConfigError, load_config, preset_names
from .data import DataError, load_data
from .evaluate import evaluate
from .impute import REDUCTIONS, impute_file
from .train import autocast_for, resolve_device, resume_config, train

USER_ERRORS = (ConfigError, DataError, checkpoint.CheckpointError, ValueError, FileNotFoundError)


def _open(args):
    """Model, config, data description and device for a checkpoint argument."""
    device = resolve_device(args.device)
    model, config, meta = load_model(args.checkpoint, device)
    return model, config, meta, device


def cmd_train(args) -> None:
    if args.resume:
        config = resume_config(args.resume, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    run_dir = train(config, resume=bool(args.resume), progress=not args.quiet)
    print(f"checkpoint: {run_dir}")


def cmd_eval(args) -> None:
    model, config, meta, device = _open(args)
    rows = load_data(config.data).split(args.split)
    if args.rows:
        rows = rows[: args.rows]
    options = {}
    if config.model.kind == "ace":
        options = {"model": args.energy_model, "num_importance": args.num_importance}
    elif args.num_importance is not None or args.energy_model != "energy":
        raise ValueError(f"--energy-model and --num-importance are for ACE models; {args.checkpoint} "
                         f"holds a model.kind '{config.model.kind}' model")
    budgeted = _budget(args, model, config, meta)
    report = evaluate(model, rows, args.estimator, args.num_draws, args.batch_size, args.seed,
                      autocast_for(config.train.precision, device), not args.quiet, **options, **budgeted)
    report.update(checkpoint=str(args.checkpoint), split=args.split, steps=args.steps,
                  policy=budgeted["policy"].tolist() if budgeted else None)
    if meta["num_classes"]:
        print(f"{args.split}: joint {report['joint_bpd']:.4f} ± {report['joint_bpd_se']:.4f} bpd, "
              f"marginal {report['marginal_bpd']:.4f} ± {report['marginal_bpd_se']:.4f} bpd "
              f"({report['rows']} rows, {args.estimator})")
    else:
        print(f"{args.split}: joint log-likelihood {report['joint_loglik']:.4f} ± {report['joint_loglik_se']:.4f}, "
              f"marginal {report['marginal_loglik']:.4f} ± {report['marginal_loglik_se']:.4f} nats per row "
              f"({report['rows']} rows, {args.estimator})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _sample_text(args, model, config, meta, gen):
    from .data.text import decode, encode
    dim = meta["dim"]
    if args.text is not None:
        if len(args.text) > dim:
            raise ValueError(f"--text has {len(args.text)} characters; this model handles {dim}")
        padded = args.text.lower() + "_" * (dim - len(args.text))
        observed = torch.tensor([c != "_" for c in padded]).expand(args.num, dim)
        x = encode(padded.replace("_", " ")).expand(args.num, dim).clone()
    elif args.random_mask is not None:
        if not 0 <= args.random_mask <= 1:
            raise ValueError(f"--random-mask is a probability in [0, 1], got {args.random_mask}")
        x = load_data(config.data).split(args.split)[: args.num]
        observed = torch.rand(x.shape, generator=gen) >= args.random_mask
    else:
        x = torch.zeros(args.num, dim, dtype=torch.long)
        observed = torch.zeros_like(x, dtype=torch.bool)
    filled = _fill(model, x, observed, args)
    for i in range(len(filled)):
        if observed.any():
            masked = "".join(c if o else "_" for c, o in zip(decode(x[i]), observed[i].tolist()))
            if args.random_mask is not None:
                print(f"original: {decode(x[i])}")
            print(f"masked:   {masked}")
        print(f"filled:   {decode(filled[i])}" if observed.any() else decode(filled[i]))
        print()


def _sample_images(args, model, config, meta, gen):
    from .pictures import image_masks, mask_from_png, save_grid
    shape, levels = tuple(meta["shape"]), meta["num_classes"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.inpaint:
        x = load_data(config.data).split(args.split)[: args.num]
        if Path(args.inpaint).suffix.lower() == ".png":
            observed = mask_from_png(args.inpaint, shape).expand(len(x), -1)
        else:
            observed = image_masks(len(x), shape, args.inpaint, aligned=not args.per_channel, generator=gen)
        filled = _fill(model, x, observed, args)
        save_grid(out / "inpaint.png", [x, x, filled], shape, levels, masks=[None, observed, None])
        np.savez(out / "inpaint.npz", original=x.numpy(), observed=observed.numpy(), filled=filled.numpy())
        print(f"wrote {out / 'inpaint.png'} (rows: original / masked / filled) and {out / 'inpaint.npz'}")
    else:
        x = torch.zeros(args.num, meta["dim"], dtype=torch.long)
        filled = _fill(model, x, torch.zeros_like(x, dtype=torch.bool), args)
        save_grid(out / "samples.png", [filled], shape, levels)
        np.save(out / "samples.npy", filled.numpy())
        print(f"wrote {out / 'samples.png'} and {out / 'samples.npy'}")


def _sample_table(args, model, config, meta, gen):
    from .data.tables import unstandardise
    x = torch.zeros(args.num, meta["dim"])
    values = unstandardise(_fill(model, x, torch.zeros_like(x, dtype=torch.bool), args), meta)
    print("\t".join(meta.get("columns", [])))
    for row in values.tolist():
        print("\t".join(f"{v:.6g}" for v in row))


def _fill(model, x, observed, args) -> torch.Tensor:
    """Sample the unobserved part on the model's device with a seeded generator; back on the CPU."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(args.seed)
    return model.sample(x.to(device), observed.to(device), args.temperature, gen, **args.budget).cpu()


def _budget(args, model, config, meta) -> dict:
    """{"policy": boundaries} for `--steps K` (the policy `fit-policy` stored for K unless
    `--policy even` or none was fitted: then K evenly spaced steps); {} without --steps."""
    if args.steps is None:
        return {}
    if config.model.kind == "ace":
        raise ValueError("--steps is for AO-ARM models; ACE imputes in one pass")
    if not 1 <= args.steps <= meta["dim"]:
        raise ValueError(f"--steps must lie in 1..{meta['dim']} (the number of variables), got {args.steps}")
    fitted = None
    if args.policy == "fitted":
        fitted = budget.load_policy(_run_dir(args.checkpoint), args.steps, model)
        if fitted is None:
            print(f"anyorder: no policy fitted for {args.steps} steps (anyorder fit-policy "
                  f"{args.checkpoint} --steps {args.steps}); using evenly spaced steps", file=sys.stderr)
    return {"policy": fitted if fitted is not None else budget.even_policy(meta["dim"], args.steps)}


def _run_dir(checkpoint_path) -> Path:
    path = Path(checkpoint_path)
    return path.parent if path.is_file() else path


SAMPLE_OPTIONS = {"text": ("text", "random_mask"), "image": ("inpaint", "per_channel"), "table": ()}


def cmd_sample(args) -> None:
    model, config, meta, _ = _open(args)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    for kind, options in SAMPLE_OPTIONS.items():
        for option in options:
            if kind != meta["kind"] and getattr(args, option) not in (None, False):
                raise ValueError(f"--{option.replace('_', '-')} is for {kind} models; "
                                 f"{args.checkpoint} holds a {meta['kind']} model")
    gen = torch.Generator().manual_seed(args.seed)
    args.budget = _budget(args, model, config, meta)
    if args.budget:
        args.budget["progress"] = not args.quiet
    samplers = {"text": _sample_text, "image": _sample_images, "table": _sample_table}
    samplers[meta["kind"]](args, model, config, meta, gen)


def cmd_impute(args) -> None:
    model, config, meta, _ = _open(args)
    if meta["kind"] != "table":
        raise ValueError(f"impute needs a checkpoint trained on a table; {args.checkpoint} holds {meta['kind']} data")
    if args.steps is not None and args.reduce == "conditional-mean":
        raise ValueError("--steps sets the passes of sampled imputations; --reduce conditional-mean takes one pass")
    impute_file(model, meta, args.input, args.output, args.num_samples, args.reduce, args.seed,
                **_budget(args, model, config, meta))
    print(f"wrote {args.output}")


def cmd_fit_policy(args) -> None:
    model, config, meta, device = _open(args)
    if config.model.kind == "ace":
        raise ValueError("fit-policy is for AO-ARM models; ACE imputes in one pass")
    dim = meta["dim"]
    if any(not 1 <= k <= dim for k in args.steps):
        raise ValueError(f"--steps must lie in 1..{dim} (the number of variables), got {args.steps}")
    rows = load_data(config.data).split(args.split)
    if rows.is_floating_point():
        rows = rows[~torch.isnan(rows).any(-1)]
    rows = rows[: args.rows] if args.rows else rows
    fitted, losses, path = budget.fit_policies(
        model, rows, args.steps, _run_dir(args.checkpoint), args.cost, args.split, args.remeasure,
        args.batch_size, torch.Generator(device=device).manual_seed(args.seed),
        autocast_for(config.train.precision, device), not args.quiet)
    exact, scale = budget.step_costs(losses, "exact"), dim * np.log(2)
    print(f"{len(rows)} {args.split} rows, protocol {model.protocol}, cost {args.cost}; expected bpd on "
          f"those rows (one pass per variable: {exact.diagonal(1).sum() / scale:.4f}):")
    for steps, (policy, _) in sorted(fitted.items()):
        even = budget.even_policy(dim, steps)
        print(f"  K={steps:5d}: fitted {budget.policy_cost(exact, policy) / scale:.4f}, "
              f"evenly spaced {budget.policy_cost(exact, even) / scale:.4f}")
    print(f"wrote {path}")


def cmd_presets(args) -> None:
    for name in preset_names():
        print(name)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="anyorder", description="Any-order autoregressive models, the MAC way.")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a preset or YAML config")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=500 optim.lr=1e-3")
    p.add_argument("--config", default="text-cpu", help="preset name or YAML file (default: text-cpu)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    def with_checkpoint(name, help_text, run):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("checkpoint", help="run directory or model.safetensors")
        q.add_argument("--device", default="auto")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.set_defaults(run=run)
        return q

    p = with_checkpoint("eval", "joint and marginal likelihoods on a split", cmd_eval)
    p.add_argument("--split", default="test")
    p.add_argument("--estimator", choices=["exact", "one-step"], default="exact")
    p.add_argument("--num-draws", type=int, default=1, help="one-step draws per row")
    p.add_argument("--rows", type=int, default=0, help="evaluate only the first N rows (0 = all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--energy-model", choices=["energy", "proposal"], default="energy", help="ACE models only")
    p.add_argument("--num-importance", type=int, metavar="K",
                   help="ACE: importance samples per log Z (default: the training value); more is less biased")
    p.add_argument("--json", help="also write the results to this JSON file")

    p = with_checkpoint("sample", "unconditional samples, text infilling or image inpainting", cmd_sample)
    p.add_argument("--num", type=int, default=4, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--text", help="text with _ for missing characters (text models)")
    p.add_argument("--random-mask", type=float, metavar="P", help="hide each character of test chunks with prob. P")
    p.add_argument("--inpaint", metavar="SHAPE|PNG", help="centre, left-half, random-pixels, random or a mask PNG")
    p.add_argument("--per-channel", action="store_true", help="image masks differ per channel")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default="samples", help="folder for image outputs")

    p = with_checkpoint("impute", "fill the missing cells of a CSV/TSV table", cmd_impute)
    p.add_argument("--input", required=True, help="CSV/TSV with empty or NaN cells to fill")
    p.add_argument("--output", required=True, help="where the completed table goes (.tsv: tabs, else commas)")
    p.add_argument("--num-samples", type=int, default=10, help="draws per row (mean, sample)")
    p.add_argument("--reduce", choices=REDUCTIONS, default="mean",
                   help="mean of the draws, every draw (multiple imputation), or one-pass conditional mean")

    def with_steps(q):
        q.add_argument("--steps", type=int, metavar="K",
                       help="K network passes, each drawing a block of variables at once (default: one per variable)")
        q.add_argument("--policy", choices=["fitted", "even"], default="fitted",
                       help="with --steps: the policy fit-policy stored for K (default; evenly spaced if none) or even")

    for name in ("eval", "sample", "impute"):
        with_steps(sub.choices[name])

    p = with_checkpoint("fit-policy", "fit step-budget policies (ARDM's dynamic program) on validation rows",
                        cmd_fit_policy)
    p.add_argument("--steps", type=int, nargs="+", required=True, metavar="K", help="budgets to fit, e.g. 20 10")
    p.add_argument("--split", default="valid")
    p.add_argument("--rows", type=int, default=256, help="validation rows to measure step losses on (0 = all)")
    p.add_argument("--cost", choices=budget.COSTS, default="exact",
                   help="exact: measured cost of each parallel step; ardm: k times the next step's loss")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--remeasure", action="store_true", help="measure step losses again even if stored")

    p = sub.add_parser("presets", help="list the built-in presets")
    p.set_defaults(run=cmd_presets)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except USER_ERRORS as err:
        print(f"anyorder: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anyorder: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
