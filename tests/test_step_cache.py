"""fit-policy's step-loss cache (`step_losses.pt`) read as untrusted: a damaged, foreign or
hostile file is named as not a valid cache and measured again, never a traceback."""

import os

import pytest
import torch

from anyorder import budget
from anyorder.errors import Notice
from anyorder.heads import CategoricalHead
from anyorder.model import AnyOrderModel
from tiny import TinyNet

D, K = 4, 3


class Hostile:
    """Unpickling this runs a shell command: what weights_only loading must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cases(tmp_path, good: dict) -> dict:
    """Writers of bad caches, by name."""
    return {
        "random bytes": lambda p: p.write_bytes(os.urandom(300)),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
        "empty": lambda p: p.write_bytes(b""),
        "a list": lambda p: torch.save([1, 2], p),
        "no losses": lambda p: torch.save({k: v for k, v in good.items() if k != "losses"}, p),
        "wrong shape": lambda p: torch.save({**good, "losses": torch.zeros(2, 2, dtype=torch.float64)}, p),
        "float32": lambda p: torch.save({**good, "losses": good["losses"].float()}, p),
        "nan losses": lambda p: torch.save({**good, "losses": torch.full((D, D), float("nan"), dtype=torch.float64)}, p),
        "hostile": lambda p: torch.save({**good, "losses": Hostile(tmp_path / "pwned")}, p),
    }


def test_bad_step_loss_caches_are_measured_again(tmp_path):
    model = AnyOrderModel(TinyNet(D, K), CategoricalHead(K), protocol="natural")
    rows = torch.randint(K, (12, D), generator=torch.Generator().manual_seed(0))
    _, truth, _ = budget.fit_policies(model, rows, [2], tmp_path)
    cache = tmp_path / budget.STEP_LOSSES
    good = torch.load(cache, weights_only=True)
    for name, damage in _cases(tmp_path, good).items():
        torch.save(good, cache)
        damage(cache)
        with pytest.warns(Notice, match="is not a valid step-loss cache; measuring the step losses again"):
            _, losses, _ = budget.fit_policies(model, rows, [2], tmp_path)
        assert torch.equal(losses.nan_to_num(-1), truth.nan_to_num(-1)), name
        assert torch.equal(torch.load(cache, weights_only=True)["losses"].nan_to_num(-1), truth.nan_to_num(-1)), name
    assert not (tmp_path / "pwned").exists()
