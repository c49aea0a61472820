"""Step budgets: likelihood and sampling time of the K-pass sampler as K shrinks.

For each trained run directory (e.g. text-cpu and digits-cpu, under `natural` and under
`strided(S)`) it measures step losses on the first --valid-rows validation rows (D passes
per row for a node network, a cached path and m²/2 query slots for a path network;
`anyorder.budget.step_losses`), fits for every budget K ∈ {D, D/2, D/4, D/8, D/16, 20, 10}
the DP policy on the exact step costs of the joint path and on ARDM's approximation k·L_t,
and one on the exact costs of infilling paths (validation rows with D/2 variables observed
at random; "DP-infill"), and prints:
  (a) on the first --rows test rows, the exact bpd of the K-step process
      (`log_prob(steps=K)`, joint) and of 50%-observed infilling (`conditional_log_prob`,
      each variable observed with probability 1/2, fixed seed; −log p(x_u | x_o)/(D ln 2),
      normalised by D as marginals are), for evenly spaced and DP (exact-cost) policies
      (infilling also with DP-infill, rescaled to each row's number of holes),
      each with its paired gap to K = D (same rows, same masks) ± the standard error of the gap;
  (b) the validation bpd every policy (also ARDM's DP) is expected to reach, read off the
      measured exact cost matrix at no extra pass;
  (c) sampling wall-clock per row (unconditional, --sample-rows rows in one batch).
It writes the table (markdown) and a plot of bpd vs K, and the raw numbers as JSON.

    python benchmarks/budgets.py --threads 1 runs/text-cpu runs/digits-cpu runs/text-strided runs/digits-strided
    python benchmarks/budgets.py --threads 1 --rows 64 --valid-rows 64 runs/text-cpu     # a quick look
    python benchmarks/budgets.py --threads 1 --budgets 16 8 --out /tmp/b runs/text-cpu   # a subset (K = D always)
    python benchmarks/budgets.py --combine a/budgets.json b/budgets.json    # one table and plot of runs measured apart
    python benchmarks/budgets.py --threads 1 --name path_budgets runs/text-cpu-path   # a path network's budgets
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from anyorder import budget
from anyorder.build import load_model
from anyorder.data import load_data
from common import add_threads_flag, machine, resolve, set_threads

HERE = Path(__file__).resolve().parent


def budgets(dim: int) -> list[int]:
    return sorted({k for k in (dim, dim // 2, dim // 4, dim // 8, dim // 16, 20, 10) if 1 <= k <= dim}, reverse=True)


def infilling_masks(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Observed masks with each variable observed w.p. 1/2 and at least one variable hidden."""
    observed = torch.rand(rows, dim, generator=torch.Generator().manual_seed(seed)) < 0.5
    observed[observed.all(-1), 0] = False
    return observed


@torch.no_grad()
def per_row_nats(model, x, observed, policy, batch_size, joint=True):
    """-log p(x) (None unless `joint`) and -log p(x_u | x_o) of the K-step process per row, `[N]`."""
    joints, conds = [], []
    for start in range(0, len(x), batch_size):
        xb, ob = x[start:start + batch_size], observed[start:start + batch_size]
        if joint:
            joints.append(-model.log_prob(xb, policy=policy).double())
        conds.append(-model.conditional_log_prob(xb, ~ob, ob, policy=policy).double())
    return torch.cat(joints) if joint else None, torch.cat(conds)


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


@torch.no_grad()
def sampling_seconds(model, dim, policy, rows, device, dtype):
    x = torch.zeros(rows, dim, dtype=dtype, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    model.sample(x, torch.zeros_like(x, dtype=torch.bool), generator=gen, policy=policy)
    return (time.perf_counter() - start) / rows


def bench_run(run: Path, args, device) -> dict:
    model, config, meta = load_model(run, device)
    data = load_data(config.data)
    dim, scale = meta["dim"], meta["dim"] * math.log(2)
    label = f"{run.name} ({model.protocol})"
    valid = data.split("valid")[: args.valid_rows].to(device)
    test = data.split(args.split)[: args.rows].to(device)
    sampling_seconds(model, dim, budget.even_policy(dim, 1), 2, device, test.dtype)   # warm-up
    started = time.perf_counter()
    ks = [k for k in budgets(dim) if k == dim or not args.budgets or k in args.budgets]
    half = torch.rand(len(valid), dim, generator=torch.Generator().manual_seed(1)).argsort(-1) < dim // 2
    m = dim - dim // 2
    measured_losses = {}

    def costs(k, given=None):
        """Exact and ARDM step costs of the order a k-step walk takes (`budget.walk_order`;
        natural-strided walks each budget its own), measured once per order."""
        length = dim if given is None else m
        order = budget.walk_order(model.protocol, length, k)
        if (order, given is None) not in measured_losses:
            losses = budget.step_losses(model, valid, args.batch_size, progress=not args.quiet, steps=order,
                                        given=None if given is None else given.to(device))
            measured_losses[order, given is None] = (budget.step_costs(losses, "exact"), budget.step_costs(losses, "ardm"))
        return measured_losses[order, given is None]

    if args.no_dp:        # evenly spaced policies only: no step losses measured
        even = {k: (budget.even_policy(dim, k), math.nan) for k in ks}
        dp_exact = dp_ardm = even
        dp_cond = {min(k, m): (budget.even_policy(m, min(k, m)), math.nan) for k in ks}
    else:
        dp_exact = {k: budget.optimal_policies(costs(k)[0], [k])[k] for k in ks}
        dp_ardm = {k: budget.optimal_policies(costs(k)[1], [k])[k] for k in ks}
        # Policies for infilling: fitted on paths from half-observed validation rows (m = D - D/2).
        dp_cond = {min(k, m): budget.optimal_policies(costs(min(k, m), half)[0], [min(k, m)])[min(k, m)] for k in ks}
    observed = infilling_masks(len(test), dim).to(device)
    results = {"run": str(run), "label": label, "machine": machine(device), "protocol": model.protocol, "dim": dim,
               "valid_rows": len(valid), "test_rows": len(test), "policies": {}}
    base = None
    for k in ks:
        policies = {"even": budget.even_policy(dim, k), "dp": dp_exact[k][0], "dp-ardm": dp_ardm[k][0]}
        exact = costs(k)[0] if not args.no_dp else None
        expected = {name: math.nan if exact is None else budget.policy_cost(exact, p) / scale
                    for name, p in policies.items()}
        entry = {"expected_valid_bpd": expected,
                 "boundaries": {name: p.tolist() for name, p in policies.items()}}
        measured = {}
        for name in ("even", "dp") if k < dim and not args.no_dp else ("even",):
            measured[name] = per_row_nats(model, test, observed, policies[name], args.batch_size)
        if k < dim and args.no_dp:
            measured["dp"] = measured["dp-infill"] = measured["even"]
        elif k < dim:
            measured["dp-infill"] = (None, per_row_nats(model, test, observed, dp_cond[min(k, m)][0],
                                                        args.batch_size, joint=False)[1])
        else:
            base = measured["even"]
            measured["dp"] = measured["dp-infill"] = base
        entry["boundaries"]["dp-infill"] = dp_cond[min(k, m)][0].tolist()
        for name, (joint, cond) in measured.items():
            entry[name] = {"cond_bpd": mean_se(cond / scale), "cond_gap": mean_se((cond - base[1]) / scale)}
            if joint is not None:
                entry[name].update(joint_bpd=mean_se(joint / scale), joint_gap=mean_se((joint - base[0]) / scale))
        entry["sample_s_per_row"] = sampling_seconds(model, dim, policies["dp"], args.sample_rows, device,
                                                     test.dtype)
        results["policies"][k] = entry
        print(f"{label} K={k:4d}: joint even {entry['even']['joint_bpd'][0]:.4f}, dp "
              f"{entry['dp']['joint_bpd'][0]:.4f} (gap {entry['dp']['joint_gap'][0]:+.4f} ± "
              f"{entry['dp']['joint_gap'][1]:.4f}); infill even {entry['even']['cond_bpd'][0]:.4f}, dp "
              f"{entry['dp']['cond_bpd'][0]:.4f}, dp-infill {entry['dp-infill']['cond_bpd'][0]:.4f}; sampling {1000 * entry['sample_s_per_row']:.1f} ms/row "
              f"[{time.perf_counter() - started:.0f} s]", flush=True)
    return results


def table(all_results: list[dict]) -> str:
    lines = ["| run | K | joint bpd, even | joint bpd, DP | DP − (K=D) | infill bpd, even | infill, joint DP "
             "| infill, infill DP | infill DP − (K=D) | valid joint bpd expected: even / DP / DP-ARDM "
             "| sampling ms/row |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in all_results:
        for k, e in res["policies"].items():
            v = e["expected_valid_bpd"]
            lines.append(
                f"| {res['label']} | {k} | {e['even']['joint_bpd'][0]:.3f} ± {e['even']['joint_bpd'][1]:.3f} "
                f"| {e['dp']['joint_bpd'][0]:.3f} | {e['dp']['joint_gap'][0]:+.3f} ± {e['dp']['joint_gap'][1]:.3f} "
                f"| {e['even']['cond_bpd'][0]:.3f} ± {e['even']['cond_bpd'][1]:.3f} | {e['dp']['cond_bpd'][0]:.3f} "
                f"| {e['dp-infill']['cond_bpd'][0]:.3f} "
                f"| {e['dp-infill']['cond_gap'][0]:+.3f} ± {e['dp-infill']['cond_gap'][1]:.3f} "
                f"| {v['even']:.3f} / {v['dp']:.3f} / {v['dp-ardm']:.3f} | {1000 * e['sample_s_per_row']:.1f} |")
    return "\n".join(lines)


def plot(all_results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data_sets = sorted({Path(r["run"]).name.split("-")[0] for r in all_results})
    fig, axes = plt.subplots(2, len(data_sets), figsize=(5 * len(data_sets), 7), squeeze=False)
    protocols = sorted({r["protocol"] for r in all_results})
    for res in all_results:
        col = data_sets.index(Path(res["run"]).name.split("-")[0])
        ks = list(res["policies"])
        color = f"C{protocols.index(res['protocol'])}"
        for row, what in enumerate(("joint_bpd", "cond_bpd")):
            ax = axes[row, col]
            names = (("even", "--"), ("dp", "-")) + ((("dp-infill", ":"),) if row else ())
            for name, style in names:
                ys = [res["policies"][k][name][what][0] for k in ks]
                ax.plot(ks, ys, style, color=color, marker="o" if name == "dp" else ".",
                        label=f"{res['protocol']}, {name}")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.minorticks_off()
            ax.set_xlabel("network passes K")
            ax.set_ylabel("joint bpd" if row == 0 else "50%-infilling bpd (per D)")
            ax.set_title(Path(res["run"]).name.split("-")[0])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="trained run directories")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                        help="no measuring: write the table and plot of earlier budgets.json files together")
    parser.add_argument("--rows", type=int, default=256, help="test rows to score")
    parser.add_argument("--valid-rows", type=int, default=256, help="validation rows to fit policies on")
    parser.add_argument("--sample-rows", type=int, default=32, help="rows per timed sampling batch")
    parser.add_argument("--budgets", type=int, nargs="+", metavar="K",
                        help="measure only these of the default budgets (K = D, the reference, always)")
    parser.add_argument("--no-dp", action="store_true", help="evenly spaced policies only (no step losses "
                        "measured; the DP columns repeat the even ones)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for NAME.{md,png,json}")
    parser.add_argument("--name", default="budgets", help="stem of the files written (default: budgets)")
    parser.add_argument("--quiet", action="store_true")
    add_threads_flag(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    device = resolve(args.device)
    torch.manual_seed(0)
    print(machine(device), flush=True)
    if args.combine:                   # runs measured in parts (--budgets) merge into one
        merged = {}
        for path in args.combine:
            for res in json.loads(path.read_text()):
                into = merged.setdefault(res["run"], {**res, "policies": {}})
                into["policies"].update({int(k): e for k, e in res["policies"].items()})
        all_results = [{**res, "policies": dict(sorted(res["policies"].items(), reverse=True))}
                       for res in merged.values()]
    elif args.runs:
        all_results = [bench_run(run, args, device) for run in args.runs]
    else:
        parser.error("give run directories to measure, or --combine budgets.json files")
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(all_results)
    print(text)
    machines = sorted({res.get("machine", machine(device)) for res in all_results})
    (args.out / f"{args.name}.md").write_text("\n".join(machines) + f"\n\n{text}\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(all_results, indent=1))
    plot(all_results, args.out / f"{args.name}.png")
    print(f"wrote {args.out / args.name}.md, .png, .json")


if __name__ == "__main__":
    main()
