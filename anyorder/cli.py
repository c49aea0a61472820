"""`anyorder` command line: train, eval, sample, impute, fit-policy, compress — one CLI for every data type.

Each subcommand is one parser-building function (`<name>_parser`) and one command function
(`cmd_<name>`); options that several commands share are added by one helper each. What is
particular to a kind of data lives beside its loader (`anyorder.data.DataIO`), and what is
particular to a model behind its query options, so nothing here branches on either.
Mistakes in what was asked (`UserError`, or an OSError naming its path) print one line;
anything else is a bug and shows its traceback (as do user errors under `--debug`).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import warnings
from pathlib import Path

import torch

from . import budget, memory
from .arguments import count, number, seed
from .build import load_model
from .config import load_config, preset_names
from .data import IO, complete_rows, data_io, load_data
from .data.table_io import check_decimals
from .errors import Notice, UserError
from .evaluate import evaluate, report_lines
from .impute import REDUCTIONS, check_quantiles
from .paths import output_file
from .precision import autocast_for
from .train import resolve_device, resume_config, train

USER_ERRORS = (UserError,)


class Terminated(Exception):
    """SIGTERM arrived: stop the way Ctrl-C stops, so temporary files are cleaned up."""


# ---------------------------------------------------------------- shared options

def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options of every command: threads, progress bars, tracebacks."""
    p.add_argument("--threads", type=count(1), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of every error")


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    """Options of the commands that load a trained model."""
    p.add_argument("checkpoint", help="run directory or model.safetensors")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … or auto (default)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (integer >= 0)")


def add_split_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="test", help="data split the rows come from (default: test)")


def add_step_options(p: argparse.ArgumentParser) -> None:
    """Step budgets for the commands that sample or score along a path."""
    p.add_argument("--steps", type=count(1), metavar="K",
                   help="K network passes, each drawing a block of variables at once (default: one per variable)")
    p.add_argument("--policy", choices=["fitted", "even"], default="fitted",
                   help="with --steps: the policy fit-policy stored for K (default; evenly spaced if none) or even")


def _budget(args, model, meta) -> dict:
    """{"policy": boundaries} for `--steps K` (the policy `fit-policy` stored for K unless
    `--policy even` or none was fitted: then K evenly spaced steps); {} without --steps."""
    if args.steps is None:
        return {}
    if args.steps > meta["dim"]:
        raise UserError(f"--steps must lie in 1..{meta['dim']} (the number of variables), got {args.steps}")
    with model.query_options(steps=args.steps):   # refuses models without step budgets (ACE), before any work
        pass
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


def _open(args):
    """Model, config, data description and device for a checkpoint argument."""
    device = resolve_device(args.device)
    model, config, meta = load_model(args.checkpoint, device)
    return model, config, meta, device


# ---------------------------------------------------------------- train

def train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model from a preset or YAML config")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=500 optim.lr=1e-3")
    p.add_argument("--config", default="text-cpu", help="preset name or YAML file (default: text-cpu)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    add_common_options(p)
    p.set_defaults(run=cmd_train)


def cmd_train(args) -> None:
    if args.resume:
        config = resume_config(args.resume, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    data = load_data(config.data)
    if data.note:
        print(data.note)            # what the data became (a text's vocabulary and cleaning)
    run_dir = train(config, resume=bool(args.resume), progress=not args.quiet, data=data)
    print(f"checkpoint: {run_dir}")


# ---------------------------------------------------------------- eval

def eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="joint, marginal and infilling likelihoods on a split")
    add_checkpoint_options(p)
    add_split_option(p)
    p.add_argument("--estimator", choices=["exact", "one-step"], default="exact")
    p.add_argument("--num-draws", type=count(1), default=1, help="one-step draws per row")
    p.add_argument("--rows", type=count(0, "0 = all rows"), default=0,
                   help="evaluate only the first N rows (0 = all)")
    p.add_argument("--batch-size", type=count(1), default=64)
    p.add_argument("--energy-model", choices=["energy", "proposal"],
                   help="ACE models only: which conditionals (default: energy)")
    p.add_argument("--num-importance", type=count(1), metavar="K",
                   help="ACE: importance samples per log Z (default: model.eval_importance); more is less biased")
    p.add_argument("--json", help="also write the results to this JSON file")
    add_step_options(p)
    add_common_options(p)
    p.set_defaults(run=cmd_eval)


def cmd_eval(args) -> None:
    json_path = output_file(args.json, "--json") if args.json else None
    if args.num_draws > 1 and args.estimator != "one-step":
        raise UserError("--num-draws averages draws of --estimator one-step; the exact estimator takes none")
    model, config, meta, device = _open(args)
    if args.num_draws > meta["dim"]:
        raise UserError(f"--num-draws {args.num_draws} is more than the {meta['dim']} variables: the exact "
                        f"estimator costs at most that many passes and has no variance (--estimator exact)")
    rows = complete_rows(load_data(config.data).split(args.split))     # rows with holes have no joint
    if args.rows:
        rows = rows[: args.rows]
    options = {name: value for name, value in (("model", args.energy_model), ("num_importance", args.num_importance))
               if value is not None}
    with model.query_options(**options):        # refuses options the model does not take, before any work
        pass
    options.update(_budget(args, model, meta))
    report = evaluate(model, rows, args.estimator, args.num_draws, args.batch_size, args.seed,
                      autocast_for(config.train.precision, device), not args.quiet, **options)
    report.update(checkpoint=str(args.checkpoint), split=args.split, steps=args.steps,
                  policy=options["policy"].tolist() if "policy" in options else None)
    budget_note = f", {args.steps}-pass sampler" if args.steps else ""
    lines = report_lines(report, data_io(meta["kind"]).unit)
    print(f"{args.split} split{budget_note}: {lines[0]}", *lines[1:], sep="\n")
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))


# ---------------------------------------------------------------- sample

def sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="unconditional samples, text infilling or image inpainting")
    add_checkpoint_options(p)
    add_split_option(p)
    p.add_argument("--num", type=count(1), default=4, help="number of samples")
    p.add_argument("--temperature", type=number(0.0), default=1.0, help="finite, >= 0 (0: the mode)")
    for kind in IO:
        for flags, options in data_io(kind).sample_options:
            p.add_argument(*flags, **options)
    add_step_options(p)
    add_common_options(p)
    p.set_defaults(run=cmd_sample)


SAMPLE_CHUNK_BYTES = 2 ** 28     # the head's parameters for the rows sampled together


def _filler(model, args):
    """`fill(x, observed)`: the unobserved part sampled on the model's device, back on the CPU,
    in chunks of rows whose head parameters take at most SAMPLE_CHUNK_BYTES; one generator
    seeded with --seed for every call (a long prompt takes several)."""
    device = model.device
    gen = torch.Generator(device=device).manual_seed(args.seed)
    budgeted = dict(args.budget, progress=not args.quiet) if args.budget else {}

    def fill(x, observed):
        rows = max(1, SAMPLE_CHUNK_BYTES // (4 * x.shape[1] * model.head.params_per_variable))
        return torch.cat([model.sample(x[i:i + rows].to(device), observed[i:i + rows].to(device), args.temperature,
                                       gen, **budgeted).cpu() for i in range(0, max(len(x), 1), rows)])

    return fill


def cmd_sample(args) -> None:
    model, config, meta, _ = _open(args)
    io = data_io(meta["kind"])
    for kind in IO:
        for flags, options in data_io(kind).sample_options if kind != meta["kind"] else ():
            name = options.get("dest") or flags[0].lstrip("-").replace("-", "_")
            if getattr(args, name) not in (None, False):
                raise UserError(f"{flags[0]} is for {kind} models; {args.checkpoint} holds {_a(meta['kind'])} model")
    io.check_sample_args(args)
    # The queries and the samples are held whole (values, mask, samples: 17 bytes a variable).
    memory.check_fits(args.num * meta["dim"] * 17, f"--num {args.num}")
    args.budget = _budget(args, model, meta)
    gen = torch.Generator().manual_seed(args.seed)
    io.sample(args, meta, lambda: load_data(config.data).split(args.split)[: args.num], gen, _filler(model, args))


# ---------------------------------------------------------------- impute

def impute_parser(sub) -> None:
    p = sub.add_parser("impute", help="fill the missing cells of a CSV/TSV table")
    add_checkpoint_options(p)
    p.add_argument("--input", required=True, help="CSV/TSV with empty or NaN cells to fill")
    p.add_argument("--output", required=True,
                   help="where the completed table goes (.tsv: tabs, else commas); never the input")
    p.add_argument("--num-samples", type=count(1),
                   help="draws per row (mean, sample, --quantiles); default 100 with --quantiles, else 10 "
                        "(an AnyOrderImputer.save checkpoint: its own num_samples)")
    p.add_argument("--reduce", choices=REDUCTIONS,
                   help="mean of the draws (the default for a trained model), every draw (multiple imputation), or "
                        "one-pass conditional mean; a checkpoint of AnyOrderImputer.save fills as its imputer does "
                        "(its own reduce by default)")
    p.add_argument("--quantiles", type=_quantile_list, metavar="Q1,Q2",
                   help="also write per-cell intervals of the --num-samples draws (e.g. 0.05,0.95) "
                        "and categorical probabilities to OUTPUT's .intervals file")
    p.add_argument("--decimals", type=_decimals, default="column", metavar="column|full|N",
                   help="digits after the point in numeric fills: as many as the column's cells show "
                        "(column, the default), every digit (full), or N")
    add_step_options(p)
    add_common_options(p)
    p.set_defaults(run=cmd_impute)


def _quantile_list(text: str) -> tuple[float, ...]:
    try:
        return check_quantiles(text.split(","), None)
    except UserError as err:
        raise argparse.ArgumentTypeError(f"expected numbers in (0, 1) separated by commas, got {text!r} ({err})") from None


def _decimals(text: str):
    try:
        return check_decimals(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_impute(args) -> None:
    output_file(args.output, "--output", inputs=(args.input,))
    if args.quantiles and args.num_samples is not None:
        check_quantiles(args.quantiles, args.num_samples)
    if args.steps is not None and args.reduce == "conditional-mean":
        raise UserError("--steps sets the passes of sampled imputations; --reduce conditional-mean takes one pass")
    model, config, meta, _ = _open(args)
    args.filler = None
    if "imputer" in meta:        # written by AnyOrderImputer.save: fill as the imputer does
        if args.steps is not None:
            raise UserError(f"{args.checkpoint} was written by AnyOrderImputer.save, which fills in its own way; "
                            "--steps is for trained path networks")
        from .imputer import AnyOrderImputer, ImputerFiller
        imputer = AnyOrderImputer.from_checkpoint(model, config, meta, args.checkpoint)
        args.reduce, args.filler, args.budget = args.reduce or imputer.reduce, ImputerFiller(imputer), {}
    else:
        args.reduce = args.reduce or "mean"
        args.budget = _budget(args, model, meta)
    data_io(meta["kind"]).impute_file(model, meta, args)


# ---------------------------------------------------------------- fit-policy

def fit_policy_parser(sub) -> None:
    p = sub.add_parser("fit-policy", help="fit step-budget policies (ARDM's dynamic program) on validation rows")
    add_checkpoint_options(p)
    p.add_argument("--steps", type=count(1), nargs="+", required=True, metavar="K", help="budgets to fit, e.g. 20 10")
    p.add_argument("--split", default="valid", help="data split the rows come from (default: valid)")
    p.add_argument("--rows", type=count(0, "0 = all rows"), default=256,
                   help="validation rows to measure step losses on (0 = all)")
    p.add_argument("--cost", choices=budget.COSTS, default="exact",
                   help="exact: measured cost of each parallel step; ardm: k times the next step's loss")
    p.add_argument("--batch-size", type=count(1), default=64)
    p.add_argument("--remeasure", action="store_true", help="measure step losses again even if stored")
    add_common_options(p)
    p.set_defaults(run=cmd_fit_policy)


def cmd_fit_policy(args) -> None:
    model, config, meta, device = _open(args)
    dim = meta["dim"]
    if any(k > dim for k in args.steps):
        raise UserError(f"--steps must lie in 1..{dim} (the number of variables), got {args.steps}")
    with model.query_options(policy=budget.even_policy(dim, 1)):   # refuses models without step budgets (ACE)
        pass
    rows = complete_rows(load_data(config.data).split(args.split))
    rows = rows[: args.rows] if args.rows else rows
    fitted, losses, path = budget.fit_policies(
        model, rows, args.steps, _run_dir(args.checkpoint), args.cost, args.split, args.remeasure,
        args.batch_size, torch.Generator(device=device).manual_seed(args.seed),
        autocast_for(config.train.precision, device), not args.quiet)
    exact, scale = budget.step_costs(losses, "exact"), dim * math.log(2)
    print(f"{len(rows)} {args.split} rows, protocol {model.protocol}, cost {args.cost}; expected bpd on "
          f"those rows (one pass per variable: {exact.diagonal(1).sum() / scale:.4f}):")
    for steps, (policy, nats) in sorted(fitted.items()):
        if budget.walk_order(model.protocol, dim, steps) is not None:   # walks strided(K): costs of that order
            print(f"  K={steps:5d}: fitted {nats / scale:.4f} (walking strided({steps}))")
            continue
        even = budget.even_policy(dim, steps)
        print(f"  K={steps:5d}: fitted {budget.policy_cost(exact, policy) / scale:.4f}, "
              f"evenly spaced {budget.policy_cost(exact, even) / scale:.4f}")
    print(f"wrote {path}")


# ---------------------------------------------------------------- compress, decompress

def _coding_parser(sub, name: str, help_text: str, run) -> argparse.ArgumentParser:
    """The arguments compress and decompress share: RUN INPUT OUTPUT, device, common options."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("checkpoint", metavar="RUN", help="run directory or model.safetensors")
    p.add_argument("input", metavar="INPUT", help="the file to read")
    p.add_argument("output", metavar="OUTPUT", help="the file to write (written whole or not at all)")
    p.add_argument("--device", default="auto", help="auto: compress on a GPU where there is one, "
                   "decompress on the kind of device that compressed")
    add_common_options(p)
    p.set_defaults(run=run)
    return p


def compress_parser(sub) -> None:
    p = _coding_parser(sub, "compress", "losslessly compress any file (byte models), a text file (text8 "
                       "models) or an image (.png, .npy) with a model's exact conditionals, streamed batch by "
                       "batch", cmd_compress)
    p.add_argument("--batch-size", type=count(1), default=128, help="rows coded together, one chunk of the "
                   "stream (recorded in the file; memory grows with it, not with the file)")
    p.add_argument("--steps", type=count(1), metavar="K", help="network passes per row: K near-equal steps, "
                   "each coding its variables from one node (faster, larger; default D: the exact likelihood)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="the network's "
                   "arithmetic (recorded in the file): auto = bf16 where the device multiplies it natively "
                   "(faster, a few thousandths of a bit per variable larger), else fp32")


def decompress_parser(sub) -> None:
    _coding_parser(sub, "decompress", "restore a file written by compress (with the same model); "
                   "it uses the thread count and batch size recorded in the file", cmd_decompress)


def _a(word: str) -> str:
    """`word` with its indefinite article ("an image", "a table")."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def cmd_compress(args) -> None:
    from .compress import compress_file
    device = resolve_device(args.device)
    model, config, meta = load_model(args.checkpoint, device)
    sizes = compress_file(model, config, meta, args.input, args.output, args.batch_size, args.threads,
                          not args.quiet, args.steps, args.precision)
    unit = data_io(meta["kind"]).variable_name(meta)
    rate = f"{8 * sizes['bytes_out'] / sizes['variables']:.4f} bits per {unit}, " if sizes["variables"] else ""
    print(f"wrote {args.output}: {sizes['bytes_in']} bytes -> {sizes['bytes_out']} bytes "
          f"({rate}{sizes['variables']} {unit}s)")


def cmd_decompress(args) -> None:
    from .compress import decompress_file, recorded_device
    device = resolve_device(recorded_device(args.input) if args.device == "auto" else args.device)
    model, config, meta = load_model(args.checkpoint, device)
    sizes = decompress_file(model, config, meta, args.input, args.output, not args.quiet)
    print(f"wrote {args.output}: {sizes['bytes_in']} bytes -> {sizes['bytes_out']} bytes")


# ---------------------------------------------------------------- presets

def presets_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the built-in presets")
    add_common_options(p)
    p.set_defaults(run=cmd_presets)


def cmd_presets(args) -> None:
    for name in preset_names():
        print(name)


COMMANDS = [train_parser, eval_parser, sample_parser, impute_parser, fit_policy_parser, compress_parser, decompress_parser, presets_parser]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top parser and each command's parser by name."""
    top = argparse.ArgumentParser(prog="anyorder", description="Any-order autoregressive models, the MAC way.")
    sub = top.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return top, sub.choices


def parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's arguments, options and positionals in any order
    (`train train.steps=300 --threads 1 data.source=x`): argparse's intermixed parsing does
    not take subparsers, so the top parser picks the command and that command's parser
    reads the rest intermixed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    top, commands = _parsers()
    if not argv or argv[0] not in commands:
        return top.parse_args(argv)           # help, or an error naming the commands
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def _terminate(signum, frame):
    raise Terminated()


def _one_line_notices(show):
    """A `warnings.showwarning` printing Notices on one line and passing the rest to `show`."""
    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, Notice):
            print(f"anyorder: note: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return show_warning


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    show = warnings.showwarning
    warnings.showwarning = _one_line_notices(show)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.run(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"anyorder: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"anyorder: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anyorder: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("anyorder: stopped by SIGTERM", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = show
    return 0


if __name__ == "__main__":
    sys.exit(main())
