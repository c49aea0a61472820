"""The docs as a user follows them: every fenced bash / python block of README.md and
docs/*.md runs (shrunk by `docs_runner`, whose docstring holds the conventions and the
substitution table), and the command line the docs describe is the one the parser has."""

import argparse
import os
import re

import numpy as np
import pytest
import torch

from anyorder.cli import parser
import anyorder.config as config_module
from anyorder.cli import main
from docs_runner import (RESUME_STEPS, ROOT, TINY_NET, TINY_TRAIN, anyorder_commands, blocks, doc_pages,
                         install_shims, run_bash, shrink_argv, shrink_python, tiny_load_config)

RUNS = {"bash", "sh", "shell", "python"}


def _subcommands() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """name -> (its parser, its one-line help) as `anyorder --help` lists them."""
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return {name: (sub, helps[name]) for name, sub in action.choices.items()}


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_of_the_page_runs(page, tmp_path, monkeypatch, capsys):
    bin_dir = install_shims(tmp_path / "shims")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace = {"__name__": "__docs__"}
    torch.set_num_threads(1)                   # as the commands' --threads 1; conftest restores 2 per test
    monkeypatch.setattr(config_module, "load_config", tiny_load_config)
    for block in blocks(page.read_text()):
        where = f"{page.relative_to(ROOT)}:{block.line}"
        if block.skip is not None:
            assert block.skip, f"{where}: a skipped block must say why: <!-- docs-test: skip (reason) -->"
            continue
        if block.lang not in RUNS:
            continue
        if block.lang == "python":
            torch.manual_seed(0)
            np.random.seed(0)
            exec(compile(shrink_python(block.code), where, "exec"), namespace)
        elif (commands := anyorder_commands(block.code)) is not None:
            for argv in commands:
                status = main(shrink_argv(argv))
                assert status == 0, f"{where}: `anyorder {' '.join(argv)}` failed:\n{capsys.readouterr().err[-3000:]}"
        else:
            done = run_bash(block.code, work, bin_dir, dict(os.environ))
            assert done.returncode == 0, (f"{where} failed ({done.returncode}):\n{block.code}\n"
                                          f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


def test_the_cli_table_lists_exactly_the_commands_with_their_help():
    """README's "CLI at a glance" table: one row per subcommand, in the parser's words."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## CLI at a glance", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `anyorder ([\w-]+)[^`]*` \| (.+?) \|\s*$", section, re.M))
    assert rows == {name: help_text for name, (_, help_text) in _subcommands().items()}


def _code(text: str) -> list[str]:
    """The code of a Markdown text: fenced blocks and `code spans` (outside blocks)."""
    found = blocks(text)
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return [b.code for b in found if b.lang != "python"] + re.findall(r"`([^`\n]+)`", prose)


def test_every_option_the_docs_name_exists():
    """Each `anyorder CMD ... --option` in a code block or code span of any page, run or
    skipped, names a command and options its parser has (so prose cannot drift either)."""
    commands = _subcommands()
    for page in doc_pages():
        for code in _code(page.read_text()):
            for name, rest in re.findall(r"(?:^|[;&|(])[ \t]*anyorder ([a-z][\w-]*)([^&;|#\n]*)", code, re.M):
                assert name in commands, f"{page.name}: `anyorder {name}` is not a command ({', '.join(commands)})"
                options = {o for a in commands[name][0]._actions for o in a.option_strings}
                for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                    assert flag in options, f"{page.name}: `anyorder {name}` has no option {flag}"


# Pages announced in the docs that other lines of work write; they join the check once they exist.
PENDING = {"docs/path-networks.md", "docs/bytes.md", "docs/imputation.md", "docs/policies.md"}


def _anchors(page) -> set[str]:
    """The anchors a code host gives a page's headings (lowercase, punctuation dropped, spaces -)."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^ *```.*?^ *```", "", page.read_text(), flags=re.S | re.M), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_link_and_picture_of_the_docs_resolves():
    for page in doc_pages():
        prose = re.sub(r"^ *```.*?^ *```", "", page.read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            found = (page.parent / path).resolve() if path else page
            if str(found.relative_to(ROOT)) in PENDING and not found.exists():
                continue
            assert found.exists(), f"{page.name}: link to {target}, which does not exist"
            if anchor:
                assert anchor in _anchors(found), f"{page.name}: {target}: no heading with that anchor"


def test_blocks_are_found_with_their_skip_reasons():
    text = ("intro\n```bash\nanyorder presets\n```\n<!-- docs-test: skip (needs a GPU) -->\n\n"
            "```python\nx = 1\n```\n<!-- docs-test: skip -->\n```bash\nls\n```\n  ```text\n  plain\n  ```\n")
    found = blocks(text)
    assert [(b.lang, b.line, b.skip) for b in found] == [("bash", 2, None), ("python", 7, "needs a GPU"),
                                                         ("bash", 11, ""), ("text", 14, None)]
    assert found[0].code == "anyorder presets\n" and found[3].code == "plain\n"
    with pytest.raises(ValueError, match="never closed"):
        blocks("```bash\nls\n")


def test_plain_anyorder_blocks_run_here_and_the_rest_under_bash():
    code = 'anyorder train --config text-cpu-path  # comment\nanyorder eval runs/x && anyorder sample runs/x --text "a_ b"\n'
    assert anyorder_commands(code) == [["train", "--config", "text-cpu-path"], ["eval", "runs/x"],
                                       ["sample", "runs/x", "--text", "a_ b"]]
    for shell in ("anyorder presets > names.txt", "ls", "anyorder eval $RUN", "anyorder presets | head -1",
                  "anyorder presets; ls"):
        assert anyorder_commands(shell) is None, shell


def test_commands_are_shrunk_by_the_table():
    train = shrink_argv(["train", "--config", "text-cpu-path", "train.steps=1500"])
    assert train[:4] == ["train", "--config", "text-cpu-path", "train.steps=1500"]
    assert train[4:] == TINY_TRAIN + TINY_NET["path-transformer"] + ["--threads", "1"]
    assert shrink_argv(["train"])[1:-2] == TINY_TRAIN + TINY_NET["transformer"]      # text-cpu by default
    assert shrink_argv(["train", "--config", "digits-cpu"])[3:-2] == TINY_TRAIN + TINY_NET["unet"]
    assert shrink_argv(["train", "--resume", "runs/x"])[3:] == [f"train.steps={RESUME_STEPS}", "--threads", "1"]
    assert shrink_argv(["eval", "runs/x", "--rows", "256"]) == ["eval", "runs/x", "--rows", "256", "--rows", "8",
                                                               "--threads", "1"]
    assert shrink_argv(["--help"]) == ["--help"]
    code = 'fit(p, d, steps=3000, batch_size=512)\nload_config("x", ["train.steps=1500", "net.width=8"])\n'
    assert shrink_python(code) == 'fit(p, d, steps=4, batch_size=64)\nload_config("x", ["train.steps=4", "net.width=8"])\n'
