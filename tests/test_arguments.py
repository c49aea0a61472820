"""Command lines as users type them: options anywhere between the positional arguments."""

import pytest

from anyorder.cli import _parsers, parse

# One command line per command with an option between (and after) its positionals, and the
# positional values argparse must find.
INTERMIXED = {
    "train": (["train", "train.steps=300", "--threads", "1", "data.source=x", "--quiet", "optim.lr=1e-3"],
              {"overrides": ["train.steps=300", "data.source=x", "optim.lr=1e-3"], "threads": 1}),
    "eval": (["eval", "--rows", "3", "runs/a", "--threads", "2"], {"checkpoint": "runs/a", "rows": 3}),
    "sample": (["sample", "--num", "2", "runs/a", "--quiet"], {"checkpoint": "runs/a", "num": 2}),
    "impute": (["impute", "--input", "a.csv", "runs/a", "--output", "b.csv"],
               {"checkpoint": "runs/a", "input": "a.csv", "output": "b.csv"}),
    "fit-policy": (["fit-policy", "--rows", "4", "runs/a", "--steps", "4", "2"],
                   {"checkpoint": "runs/a", "steps": [4, 2], "rows": 4}),
    "compress": (["compress", "runs/a", "--threads", "1", "in.txt", "--batch-size", "8", "out.ao"],
                 {"checkpoint": "runs/a", "input": "in.txt", "output": "out.ao", "batch_size": 8}),
    "decompress": (["decompress", "runs/a", "in.ao", "--quiet", "out.txt"],
                   {"checkpoint": "runs/a", "input": "in.ao", "output": "out.txt", "quiet": True}),
    "presets": (["presets", "--quiet"], {"quiet": True}),
}


def test_every_command_is_covered():
    assert set(_parsers()[1]) == set(INTERMIXED)


@pytest.mark.parametrize("command", sorted(INTERMIXED))
def test_options_between_positionals_parse(command):
    argv, expected = INTERMIXED[command]
    args = parse(argv)
    assert args.command == command
    assert {name: getattr(args, name) for name in expected} == expected


def test_unknown_command_and_option_still_refused(capsys):
    for argv in (["trian"], ["eval", "runs/a", "--bogus"], []):
        with pytest.raises(SystemExit) as stop:
            parse(argv)
        assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
