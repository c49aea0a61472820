"""docs/api.md against the code: every name its tables list exists where it says, and takes
the parameters written beside it (a renamed or removed function fails here, not in a user's
hands). The page's prose snippets are run by test_docs; this checks its reference tables."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
HEADING = re.compile(r"^## .*\(`(anyorder(?:\.\w+)*)`\)")
ENTRY = re.compile(r"`([^`]+)`")


def resolve(dotted: str):
    """The object a dotted name stands for: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(dotted)


def split_parameters(text: str) -> list[str]:
    """"a, b=(1, 2), *, c=None" -> ["a", "b", "*", "c"]: top-level commas only, names only."""
    names, depth, current = [], 0, ""
    for char in text + ",":
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            names.append(re.split(r"[=\s\[]", current.strip(), maxsplit=1)[0])
            current = ""
        else:
            current += char
    return [n for n in names if n and n not in ("*", "…", "/")]


def entries():
    """(line number, dotted name, documented parameters or None) for every reference row."""
    module, found = None, []
    for number, line in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), 1):
        heading = HEADING.match(line)
        if heading:
            module = heading.group(1)
        elif line.startswith("## "):
            module = None
        if not line.startswith("| `"):
            continue
        first_cell = line[1:].split(" | ")[0]
        prefix = None                         # the entry before in this cell, whose module the next may share
        for code in ENTRY.findall(first_cell):
            match = re.match(r"^(…?[\w.]+)(?:\((.*)\))?$", code.strip())
            if not match:
                continue
            name, params = match.groups()
            if name.startswith("…"):          # "…images.load_images": the package of the entry before
                name = prefix.rsplit(".", 2)[0] + "." + name[1:]
            elif not name.startswith("anyorder"):
                home = prefix.rsplit(".", 1)[0] if prefix and prefix.startswith("anyorder.") and not \
                    prefix.startswith(f"{module}.") else module
                if home is None:
                    continue
                name = f"{home}.{name}"
            prefix = name
            found.append((number, name, None if params is None else split_parameters(params)))
    return found


def test_the_page_lists_names():
    assert len(entries()) > 60


@pytest.mark.parametrize("number,name,params", entries(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_each_listed_name_exists_and_takes_its_documented_parameters(number, name, params):
    target = resolve(name)
    if params is None:
        return
    signature = inspect.signature(target)
    accepted = set(signature.parameters)
    takes_keywords = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    documented = [p.lstrip("*") for p in params]
    unknown = [] if takes_keywords else [p for p in documented if p not in accepted]   # **options: passed on
    assert not unknown, f"docs/api.md line {number}: {name} has no parameter(s) {unknown}; it takes {signature}"
