"""The docs' plots, drawn from the results the benchmark scripts wrote (no training here).

    python benchmarks/plots.py                       # every plot below; a second or two
    python benchmarks/plots.py --only compression    # one of them

Each plot reads its benchmark's own output in benchmarks/results/ (the Markdown tables that
compression.py and imputation.py write, budgets.py's budgets.json) and writes a PNG beside
it; a missing or reshaped input is reported and that plot is left out. The path-network
figures come from path_network.json (path_network.py --record TITLE adds or replaces one
run's table there; the first three runs were transcribed from its printed tables).
`lattice` draws the README's picture of the lattice (no data). `shared_autonomy.py` and
`budgets.py` draw their own full plots (shared_autonomy.png, budgets.png); `budgets` here
is the one-panel summary: the joint's cost of K passes against K = D.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs"

# bpd ± SE (joint, card-uniform marginal, infilling with 50% observed) on the first 256 test
# rows of the embedded Shakespeare, from benchmarks/path_network.py; commands in docs/results.md.
QUERIES = ["joint", "marginal", "infill"]      # the keys of path_network.json, in plot order
COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#555555"]


class MissingInput(Exception):
    """A plot's input is absent or not in the shape this script reads."""


def markdown_tables(path: Path) -> list[list[dict[str, str]]]:
    """Every table of a Markdown file as a list of rows {header: cell}, in file order."""
    if not path.is_file():
        raise MissingInput(f"{path} does not exist (run its benchmark first)")
    tables, current, header = [], None, None
    for line in path.read_text().splitlines() + [""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            if current is not None:
                tables.append(current)
            current, header = None, None
        elif header is None:
            header, current = cells, []
        elif not all(set(c) <= set("-: ") for c in cells):
            current.append(dict(zip(header, cells)))
    return tables


def number(cell: str) -> tuple[float, float]:
    """'0.650 ± 0.013' or '**0.418 ± 0.025**' or '3.7280' -> (value, se); se is 0 when absent."""
    found = re.findall(r"[-+]?\d+(?:\.\d+)?", cell.replace("**", ""))
    if not found:
        raise MissingInput(f"no number in table cell {cell!r}")
    return float(found[0]), float(found[1]) if "±" in cell and len(found) > 1 else 0.0


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_path_network(plt, out: Path) -> Path:
    """Path vs bidirectional vs left-to-right, equal steps: grouped bars per query, one panel
    per recorded run of path_network.py."""
    path = RESULTS / "path_network.json"
    if not path.is_file():
        raise MissingInput(f"{path} does not exist (run benchmarks/path_network.py --record TITLE)")
    runs = json.loads(path.read_text())
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, run in zip(axes, runs):
        title, models = run["title"], run["models"]
        width = 0.8 / len(models)
        for i, (name, figures) in enumerate(models.items()):
            xs = [q + (i - (len(models) - 1) / 2) * width for q in range(len(QUERIES))]
            ax.bar(xs, [figures[q][0] for q in QUERIES], width, yerr=[figures[q][1] for q in QUERIES],
                   label=name, color=COLOURS[i], capsize=2)
        ax.set_xticks(range(len(QUERIES)), ["joint", "marginal", "infill 50%"])
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test bpd (lower is better)")
    axes[0].legend(fontsize=8)
    return _save(fig, out / "path_network.png")


def plot_budgets(plt, out: Path) -> Path:
    """Joint bpd of the K-pass sampler minus K = D (DP policy), ± SE, for each run."""
    path = RESULTS / "budgets.json"
    if not path.is_file():
        raise MissingInput(f"{path} does not exist (run benchmarks/budgets.py)")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for colour, run in zip(COLOURS, json.loads(path.read_text())):
        budgets = sorted(run["policies"], key=int)
        gaps = [run["policies"][k]["dp"]["joint_gap"] for k in budgets]
        ax.errorbar([int(k) for k in budgets], [mean for mean, _ in gaps], yerr=[se for _, se in gaps],
                    marker="o", capsize=2,
                    color=colour, label=run["label"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("network passes K (D = 64)")
    ax.set_ylabel("joint bpd − bpd at K = D")
    ax.set_title("step budgets: the cost of drawing D/K variables per pass", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "budgets_gap.png")


def plot_compression(plt, out: Path) -> Path:
    """Compressed size of each file: anyorder, its exact likelihood and the classic codecs."""
    tables = [t for t in markdown_tables(RESULTS / "compression.md") if t and "gzip -9" in t[0]]
    if not tables:
        raise MissingInput("compression.md has no table with a 'gzip -9' column")
    codecs = ["gzip -9", "bzip2 -9", "xz -9", "zstd -19"]
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.8))
    for ax, table in zip(axes if len(tables) > 1 else [axes], tables):
        labelled = set()
        unit = next(k for k in table[0] if k.startswith("anyorder bits/"))
        exact = next(k for k in table[0] if k.startswith("exact bits/"))
        files = [row for row in table if "--steps" not in row["file"]]
        names = ["anyorder", "exact −log2 p", *sorted({"anyorder " + r["file"].split(", ")[1] for r in table if "--steps" in r["file"]},
                                                      key=lambda b: -int(b.split()[-1])), *codecs]
        for g, row in enumerate(files):
            budgeted = {"anyorder " + r["file"].split(", ")[1]: r[unit] for r in table if r["file"].startswith(row["file"] + ", ")}
            cells = {"anyorder": row[unit], "exact −log2 p": row[exact], **budgeted, **{c: row[c] for c in codecs}}
            shown = [n for n in names if n in cells]
            for i, name in enumerate(shown):
                ax.bar(g + (i - (len(shown) - 1) / 2) * 0.1, number(cells[name])[0], 0.1,
                       color=COLOURS[names.index(name) % len(COLOURS)], label=name if name not in labelled else None)
                labelled.add(name)
        ax.set_xticks(range(len(files)), [row["file"] for row in files], fontsize=8)
        ax.set_ylabel(unit.replace("anyorder ", "") + " (lower is better)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    return _save(fig, out / "compression.png")


def plot_imputation(plt, out: Path) -> Path:
    """NRMSE of every method on every table, 20% of test cells hidden, ± SE over mask seeds."""
    tables = [t for t in markdown_tables(RESULTS / "imputation.md") if t and "method" in t[0]]
    if not tables:
        raise MissingInput("imputation.md has no table with a 'method' column")
    table = tables[0]
    names = [k[: -len(" NRMSE")] for k in table[0] if k.endswith(" NRMSE")]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.8), sharey=True)
    for ax, name in zip(axes, names):
        rows = [r for r in table if not r[f"{name} NRMSE"].startswith("—")]
        figures = [number(r[f"{name} NRMSE"]) for r in rows]
        colours = [COLOURS[0] if r["method"].startswith("anyorder") else COLOURS[6] for r in rows]
        ax.barh(range(len(rows)), [v for v, _ in figures], xerr=[s for _, s in figures], color=colours, capsize=2)
        ax.set_yticks(range(len(rows)), [r["method"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("NRMSE (lower is better)")
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "imputation.png")


def plot_lattice(plt, out: Path) -> Path:
    """The binary lattice of a 4-character row, with the paths of a joint and an infilling query."""
    word, dim = "word", 4
    nodes = [frozenset(s) for k in range(dim + 1) for s in itertools.combinations(range(dim), k)]
    layers = {k: [n for n in nodes if len(n) == k] for k in range(dim + 1)}
    place = {n: (i - (len(layers[len(n)]) - 1) / 2, -len(n)) for k in layers for i, n in enumerate(layers[k])}
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for a in nodes:
        for b in nodes:
            if a < b and len(b) == len(a) + 1:
                ax.plot(*zip(place[a], place[b]), color="#cccccc", lw=0.8, zorder=1)
    joint = [frozenset(range(k)) for k in range(dim + 1)]
    infill = [frozenset({1, 3}), frozenset({0, 1, 3}), frozenset(range(dim))]
    for path, colour, label in ((joint, COLOURS[0], "joint p(word): 4 edges along the protocol"),
                                (infill, COLOURS[1], "infilling p(w, r | _o_d): 2 edges")):
        for a, b in zip(path, path[1:]):
            ax.annotate("", place[b], place[a], arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.2, shrinkA=14, shrinkB=14),
                        zorder=2)
        ax.plot([], [], color=colour, lw=2.2, label=label)
    for n in nodes:
        text = "".join(word[i] if i in n else "_" for i in range(dim))
        ax.text(*place[n], text, ha="center", va="center", family="monospace", fontsize=11, zorder=3,
                bbox=dict(boxstyle="round", fc="white", ec="#888888"))
    ax.set_title("Every node s is a set of observed characters; every edge s → s ∪ {j} is p(x_j | x_s),\n"
                 "all given by one network. A query walks one path, so its likelihood is exact.", fontsize=9)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.02), fontsize=9, ncol=2, frameon=False)
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-4.7, 0.5)
    ax.axis("off")
    return _save(fig, out / "lattice.png")


PLOTS = {"path-network": (plot_path_network, RESULTS), "budgets": (plot_budgets, RESULTS),
         "compression": (plot_compression, RESULTS), "imputation": (plot_imputation, RESULTS),
         "lattice": (plot_lattice, DOCS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(PLOTS), help="draw only these plots")
    parser.add_argument("--out", type=Path, help="write every PNG here instead (default: beside its data)")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    missing = 0
    for name in args.only or PLOTS:
        draw, folder = PLOTS[name]
        (args.out or folder).mkdir(parents=True, exist_ok=True)
        try:
            print(f"{name}: wrote {draw(plt, args.out or folder)}")
        except MissingInput as err:
            missing += 1
            print(f"{name}: left out: {err}", file=sys.stderr)
        plt.close("all")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
