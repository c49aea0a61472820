"""Runs the fenced code blocks of the Markdown docs, shrunk so that a whole page takes seconds.

Blocks: every fenced ```bash and ```python block of README.md and docs/*.md, in order. A
block whose last non-blank line before the fence is `<!-- docs-test: skip (reason) -->`
is not run (the reason is required). All blocks of one page run in one fresh working
directory, so a block may use what an earlier block of the same page made (a run
directory, a CSV); pages do not share anything.

bash blocks: a block made only of `anyorder ...` commands (one per line, or joined by
`&&`; no pipes, redirections or shell variables) runs in this process, each command as
`anyorder.cli.main(shrink_argv(argv))`, which saves the ~2 s a fresh interpreter spends
importing torch per command. Any other block runs under `bash -eo pipefail` with
PYTHONPATH = the checkout (so its code runs, not an installed copy) and these commands on
PATH in front of the real ones:

| command in a block | what runs |
|---|---|
| `anyorder CMD ...` | `python -m anyorder.cli CMD ... <SHRINK[CMD]> --threads 1` |
| `python ...` | the interpreter running the tests |
| `pip ...`, `pytest ...` | nothing (installing is CI's job; the suite would run itself) |

SHRINK appends, after the block's own arguments (so it wins over them):
  train     TINY_TRAIN, plus TINY_NET[net.kind] of the config being trained (none with --resume,
            whose network is fixed; there only train.steps grows to RESUME_STEPS)
  eval      --rows 8
  fit-policy --rows 8
  sample    --num 2
Other commands run as written (they work on files the block makes, which are small).

python blocks run in this process by `exec`, one namespace per page, in the page's working
directory, with one torch thread, after torch.manual_seed(0) and numpy.random.seed(0).
`anyorder.config.load_config` gives them configs with the overrides `anyorder train`
gets appended (`tiny_load_config`). Integer keyword arguments
and dotted config overrides named in CAPS are lowered to their cap (`steps=3000` ->
`steps=4`, `"train.steps=1500"` -> `"train.steps=4"`, `width=256` -> `width=16`), so a
snippet keeps its shape and runs in a moment.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from anyorder.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*(?:\((?P<reason>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")

TINY_TRAIN = ["train.steps=2", "train.batch_size=8", "train.eval_every=2", "train.eval_rows=8",
              "train.ckpt_every=2", "train.log_every=1"]
TINY_NET = {"transformer": ["net.width=16", "net.depth=1", "net.heads=2"],
            "path-transformer": ["net.width=16", "net.depth=1", "net.heads=2"],
            "unet": ["net.channels=8", "net.attention_resolutions=[]"],
            "resmlp": ["net.width=16", "net.depth=1"]}
RESUME_STEPS = 4
SHRINK = {"eval": ["--rows", "8"], "fit-policy": ["--rows", "8"], "sample": ["--num", "2"]}
CAPS = {"steps": 4, "width": 16, "depth": 1, "channels": 8, "components": 3, "num_draws": 2,
        "num_samples": 20, "batch_size": 64, "episodes": 2}


def doc_pages() -> list[Path]:
    """README.md and every docs/*.md, found by glob so that pages added later are covered."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    """One fenced block: its language, code, where it starts (1-based line of the fence)
    and why it is skipped (None = it runs)."""

    lang: str
    code: str
    line: int
    skip: str | None = None


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, every language, in order."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {i + 1}: a ``` fence is never closed")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.search(before)
        skip = None if marker is None else (marker.group("reason") or "").strip()
        indent = len(opened.group("indent"))
        code = "\n".join(line[indent:] for line in lines[i + 1:end])
        found.append(Block(opened.group("lang").lower(), code + "\n", i + 1, skip))
        i = end + 1
    return found


def shrink_argv(argv: list[str]) -> list[str]:
    """An `anyorder` command line with the runner's tiny settings appended (see SHRINK)."""
    if not argv or argv[0].startswith("-"):
        return argv
    command, extra = argv[0], list(SHRINK.get(argv[0], []))
    if command == "train":
        if "--resume" in argv:
            extra = [f"train.steps={RESUME_STEPS}"]
        else:
            config = argv[argv.index("--config") + 1] if "--config" in argv else "text-cpu"
            extra = tiny_overrides(config, [a for a in argv[1:] if "=" in a and not a.startswith("-")])
    return argv + extra + ["--threads", "1"]


def tiny_overrides(config: str, overrides: list[str]) -> list[str]:
    """TINY_TRAIN and the network's TINY_NET entry, for a config and the overrides it is given."""
    return TINY_TRAIN + TINY_NET.get(load_config(config, overrides).net.get("kind"), [])


def tiny_load_config(name_or_path: str, overrides=()):
    """`anyorder.config.load_config` with the tiny overrides appended (for python blocks)."""
    return load_config(name_or_path, [*overrides, *tiny_overrides(name_or_path, list(overrides))])


def shrink_python(code: str) -> str:
    """Integer keyword arguments and dotted overrides named in CAPS lowered to their cap."""
    names = "|".join(CAPS)

    def cap(match: re.Match) -> str:
        return f"{match.group(1)}={min(int(match.group(2)), CAPS[match.group(1)])}"
    return re.sub(rf"(?<![\w])({names})=(\d+)\b", cap, code)


SHIMS = {
    "anyorder": '#!{python}\nimport sys\nsys.path[:0] = [{tests!r}, {root!r}]\n'
                'from docs_runner import shrink_argv\nfrom anyorder.cli import main\n'
                'sys.exit(main(shrink_argv(sys.argv[1:])))\n',
    "python": '#!/bin/sh\nexec {python} "$@"\n',
    "pip": '#!/bin/sh\necho "docs-test: pip $* not run (installing is CI\'s job)"\n',
    "pytest": '#!/bin/sh\necho "docs-test: pytest $* not run (the suite is running)"\n',
}


def install_shims(folder: Path) -> Path:
    """The commands of the table above, as executables in `folder/bin`."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in SHIMS.items():
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable, tests=str(ROOT / "tests"), root=str(ROOT)))
        path.chmod(0o755)
    return bin_dir


SHELL_SYNTAX = {";", "|", "||", "&", "<", ">", ">>", "(", ")", "<<", "&>", ";;"}


def anyorder_commands(code: str) -> list[list[str]] | None:
    """The argv (after `anyorder`) of every command of a block made only of plain `anyorder`
    commands; None for any other block (it runs under bash)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:          # an unclosed quote: leave it to bash to report
            return None
        if not tokens:
            continue
        if SHELL_SYNTAX & set(tokens) or any("$" in t or "`" in t for t in tokens):
            return None
        segments = [[]]
        for token in tokens:
            if token == "&&":
                segments.append([])
            else:
                segments[-1].append(token)
        if any(not seg or seg[0] != "anyorder" for seg in segments):
            return None
        commands += [seg[1:] for seg in segments]
    return commands


def run_bash(code: str, cwd: Path, bin_dir: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(env, PATH=f"{bin_dir}:{env.get('PATH', '')}", PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", "-eo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
