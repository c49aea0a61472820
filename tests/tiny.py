"""Small networks for checking the lattice machinery against exact answers."""

import itertools

import pytest
import torch
from torch import nn

from anyorder.nets import NodeNetwork


class TinyNet(NodeNetwork):
    """An MLP over one-hot observed values and the mask: a real, inconsistent AO-ARM."""

    def __init__(self, dim, num_classes, out_features=None, width=32, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.dim, self.num_classes = dim, num_classes
        out = out_features or num_classes
        self.out = out
        self.body = nn.Sequential(nn.Linear(dim * (num_classes + 1), width), nn.Tanh(),
                                  nn.Linear(width, dim * out))
        with torch.no_grad():
            self.body[-1].weight.mul_(20.0)  # sharp, far-from-uniform conditionals

    def forward(self, x_in, observed):
        onehot = nn.functional.one_hot(x_in, self.num_classes).float() * observed.unsqueeze(-1)
        h = torch.cat([onehot.flatten(1), observed.float()], -1)
        return self.body(h).view(len(x_in), self.dim, self.out)


class OracleNet(NodeNetwork):
    """Exact conditionals p(x_j | x_observed) of a joint probability table over K^D."""

    def __init__(self, table):
        super().__init__()
        self.dim, self.num_classes = table.dim(), table.shape[0]
        configs = torch.tensor(list(itertools.product(range(self.num_classes), repeat=self.dim)))
        self.register_buffer("configs", configs)                     # [K^D, D]
        self.register_buffer("probs", table.flatten().double())      # [K^D]

    def forward(self, x_in, observed):
        agree = (self.configs.unsqueeze(0) == x_in.unsqueeze(1)) | ~observed.unsqueeze(1)
        weight = self.probs * agree.all(-1)                          # [B, K^D]
        onehot = nn.functional.one_hot(self.configs, self.num_classes).double()
        marg = torch.einsum("bn,ndk->bdk", weight, onehot)
        return marg.clamp_min(1e-300).log().float()


def all_configs(dim, num_classes):
    return torch.tensor(list(itertools.product(range(num_classes), repeat=dim)))


def every_mask(dim):
    """Every non-empty subset of D variables as a mask, `[2^D - 1, D]` bool."""
    return torch.tensor([[(c >> i) & 1 for i in range(dim)] for c in range(1, 2 ** dim)], dtype=torch.bool)


def assert_marginals_normalised(model, dim, num_classes):
    """For every subset e: log p(x_e) ignores x outside e, and Σ_{x_e} p(x_e) = 1 (by enumeration)."""
    x = all_configs(dim, num_classes)
    with torch.no_grad():
        for mask in every_mask(dim):
            masks = mask.expand_as(x)
            logp = model.log_prob(x, masks)
            # x outside the mask must not matter: each x_e repeats K^(D-|e|) times, equal.
            codes = (x * masks * (num_classes ** torch.arange(dim))).sum(-1)
            for code in codes.unique():
                same = logp[codes == code]
                assert torch.allclose(same, same[0].expand_as(same), atol=1e-6)
            total = logp.double().exp().sum() / num_classes ** (dim - int(mask.sum()))
            assert total.item() == pytest.approx(1.0, abs=1e-5)
