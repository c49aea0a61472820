"""YAML read as plain data only, with its size checked before anything is built.

Configs and `section.key=value` overrides are YAML, but a run needs nothing beyond what
JSON holds: mappings with string keys, lists, strings, numbers, booleans and null. So
every explicit tag other than those (`!!python/object`, `!!binary`, `!!set`, local `!x`)
is refused, dates stay text (`train.out=2024-01-01` names a folder), and the document is
refused when its expanded size — each alias counted as often as it is used — or its depth
passes a bound. The bound is checked on the composed node graph, whose size is that of the
text, before any value is constructed: an alias bomb (a few lines naming a billion nodes)
is refused in microseconds instead of being expanded later by the config's JSON copy.
Every failure is a `ConfigError` naming `where` the text came from.
"""

from __future__ import annotations

import yaml

from .errors import UserError

MAX_BYTES = 1 << 20        # a config is a few hundred bytes; a megabyte is not a config
MAX_NODES = 100_000        # values after expanding aliases
MAX_DEPTH = 50             # nesting of lists and mappings
_CORE = "tag:yaml.org,2002:"
PLAIN_TAGS = {_CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader whose implicit types are those of JSON: no timestamps."""


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _CORE + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def check_nodes(root: yaml.Node, where: str, error=UserError) -> None:
    """Refuse a composed document whose tags are not plain, whose mapping keys are not
    strings, that refers to itself, or that expands past MAX_NODES values or MAX_DEPTH levels.

    One depth-first walk over the node graph (each node once: aliases are shared nodes),
    computing every node's expanded size and depth from its children's."""
    size, depth, open_nodes = {}, {}, set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise error(f"{where} expands to more than {MAX_NODES} values (aliases counted each time "
                            "they are used); a config is far smaller")
            if depth[key] > MAX_DEPTH:
                raise error(f"{where} nests lists or mappings more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise error(f"{where} has an alias that refers to its own anchor (a value inside itself)")
        if node.tag not in PLAIN_TAGS:
            raise error(f"{where}: the tag {_short(node.tag)} is not allowed; configs hold plain "
                        "values (text, numbers, true/false, null, lists, mappings)")
        if isinstance(node, yaml.MappingNode):
            for k, _ in node.value:
                if k.tag not in (_CORE + "str", _CORE + "merge"):
                    raise error(f"{where}: mapping keys must be text, got {k.value!r} ({_short(k.tag)})")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load(text: str, where: str, error=UserError):
    """The plain value a YAML text holds (None for an empty document); `error` (a UserError
    subclass) is raised, naming `where`, for anything else."""
    if len(text) > MAX_BYTES:
        raise error(f"{where} is {len(text)} characters long; a config is at most {MAX_BYTES}")
    loader = _PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_nodes(node, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"{where} is not valid YAML: {first}{_place(err)}") from None
    except RecursionError:
        raise error(f"{where} nests lists or mappings too deeply") from None
    finally:
        loader.dispose()


def _place(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    detail = f" ({problem})" if problem and problem not in str(err).splitlines()[0] else ""
    return f"{detail} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else detail
