"""Configs and overrides as untrusted YAML: plain values only, bounded size, one-line errors."""

import json
import random

import pytest

from anyorder import plainyaml
from anyorder.config import ConfigError, load_config


def _bomb(levels: int, width: int = 9) -> str:
    """A data section whose key l{i} holds `width` aliases of l{i-1}: width**levels values."""
    lines = ["data:", "  kind: text", f"  l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines + [f"  x: *l{levels - 1}"])


@pytest.mark.parametrize("override, words", [
    ("model.path_mix=[1,", "not valid YAML"),
    ("model.path_mix=[1, 2]]", "not valid YAML"),
    ("data.x=!!python/object/apply:os.system ['true']", "tag !!python/object/apply:os.system"),
    ("data.x=!!python/name:os.system", "tag !!python/name:os.system"),
    ("data.x=!!binary aGk=", "tag !!binary"),
    ("data.x=!!set {a}", "tag !!set"),
    ("data.x=!local 3", "tag !local"),
    ("data.x=*a", "undefined alias"),
    ("data.x=&a [*a]", "refers to its own anchor"),
    ("data.x={1: 2}", "keys must be text"),
    ("data.x=" + "[" * 5000, "too deeply"),
    ("data.x=" + "[" * 60 + "]" * 60, "more than 50 levels"),
], ids=lambda value: value[:24] if isinstance(value, str) else None)
def test_bad_override_values_are_one_line_config_errors(override, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")) as err:
        load_config("text-cpu", [override])
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_dates_stay_text_and_configs_stay_json():
    config = load_config("text-cpu", ["train.out=2024-01-01", "data.when=2024-01-01 10:00:00"])
    assert config.train.out == "2024-01-01" and config.data["when"] == "2024-01-01 10:00:00"
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


def test_alias_bomb_is_refused_before_any_value_is_built(tmp_path, monkeypatch):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(9))           # 9**9 ≈ 3.9e8 values once expanded

    def never(*args):
        raise AssertionError("a value was constructed")
    monkeypatch.setattr(plainyaml._PlainLoader, "construct_document", never)
    with pytest.raises(ConfigError, match="more than 100000 values"):
        load_config(str(path))


def test_shared_aliases_within_the_bound_still_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(_bomb(3) + "\nnet: {kind: transformer}\ntrain: {steps: 3}")   # 9**3 = 729 values: fine
    config = load_config(str(path))
    assert len(config.data["x"]) == 9 and config.data["x"][8][8][8] == "x" and config.train.steps == 3


@pytest.mark.parametrize("content, words", [
    (b"a: \xff\n", "not UTF-8"),
    (b"1: 2\ntrain: {}\n", "keys must be text"),
    (b"- a\n- b\n", "mapping of config sections"),
    (b"x" * (plainyaml.MAX_BYTES + 1), "a config is at most"),
], ids=["binary", "int-key", "list", "huge"])
def test_bad_config_files(tmp_path, content, words):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=words):
        load_config(str(path))


def test_fuzzed_overrides_load_or_raise_config_error():
    """Random strings over YAML's syntax characters: every one either gives a config that
    survives its JSON copy or a one-line ConfigError; nothing else escapes."""
    rng = random.Random(0)
    alphabet = list("[]{}:,&*!|>'\"#%@`-?. \t\n") + ["!!python/tuple", "!!str", "a", "1", "e9", "<<", "~"]
    for _ in range(600):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        try:
            config = load_config("text-cpu", [f"data.x={value}"])
        except ConfigError as err:
            assert "\n" not in str(err)
            continue
        assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


def test_a_folder_named_after_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """A run folder named after its preset (train.out=text-cpu) in the working directory:
    --config text-cpu still means the preset; a folder with any other name is no config."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text-cpu").mkdir()
    (tmp_path / "mine").mkdir()
    assert load_config("text-cpu").net["kind"] == "transformer"
    with pytest.raises(ConfigError, match="is a folder"):
        load_config("mine")


def test_a_network_too_large_for_memory_is_a_config_error(monkeypatch):
    """The allocator's refusal while the network is built names the section and its sizes;
    any other failure stays a bug (its own exception)."""
    from anyorder import registry

    def huge(dim: int, width: int = 1):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    def broken(dim: int, width: int = 1):
        raise RuntimeError("a bug")

    monkeypatch.setattr(registry.importlib, "import_module", lambda name: type("M", (), {"huge": huge, "broken": broken}))
    with pytest.raises(ConfigError, match="net kind 'huge' with {'width': 100000000} does not fit in memory"):
        registry.build({"huge": ("m", "huge")}, {"kind": "huge", "width": 10 ** 8}, "net", dim=4)
    with pytest.raises(RuntimeError, match="a bug"):
        registry.build({"broken": ("m", "broken")}, {"kind": "broken"}, "net", dim=4)
