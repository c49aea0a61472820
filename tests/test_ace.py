import math

import pytest
import torch
from torch import nn

from anyorder.ace import ACEModel, EnergyNet
from anyorder.data.tables import load_table
from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead
from anyorder.nets import NodeNetwork
from anyorder.nets.resmlp import ResMLP

D = 3


def make_model(dim=D, context=8, **kwargs):
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(10)
    net = ResMLP(dim, None, head.params_per_variable, width=32, depth=2, context=context)
    return ACEModel(net, head, energy_width=32, energy_depth=2, **kwargs)


class GaussianEnergy(nn.Module):
    """E_j(y) = ((y - a_j) / b_j)^2 / 2, so Z_j = sqrt(2π) b_j exactly (no clipping)."""

    def __init__(self, dim):
        super().__init__()
        self.a = torch.linspace(-0.5, 0.5, dim)
        self.b = torch.linspace(0.6, 1.2, dim)

    def forward(self, value, var, context):
        return 0.5 * ((value - self.a[var]) / self.b[var]) ** 2

    def log_density(self, x):
        return torch.distributions.Normal(self.a, self.b).log_prob(x)


class ProposalEnergy(nn.Module):
    """E(y) = −log q(y | context) + 3, with the network passing its head params as context."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, value, var, context):
        return 3.0 - self.head.log_prob(context.unsqueeze(1), value.unsqueeze(1)).squeeze(1)


class ParamsAsContext(NodeNetwork):
    def __init__(self, net):
        super().__init__()
        self.net, self.dim, self.context = net, net.dim, net.out_features

    def forward(self, x_in, observed):
        return self.net(x_in, observed)

    def forward_with_context(self, x_in, observed):
        params = self.net(x_in, observed)
        return params, params


def test_energy_of_minus_log_q_gives_the_proposal_likelihood_exactly():
    torch.manual_seed(1)
    head = MixtureOfGaussiansHead(10)
    net = ParamsAsContext(ResMLP(D, None, head.params_per_variable, width=32, depth=2))
    model = ACEModel(net, head)
    model.energy = ProposalEnergy(head)
    x = torch.randn(16, D)
    mask = torch.rand(16, D) < 0.6
    mask[:, 0] = True
    for k in (1, 7):
        energy = model.log_prob(x, mask, model="energy", num_importance=k)
        assert torch.allclose(energy, model.log_prob(x, mask, model="proposal"), atol=1e-4)


def test_importance_sampled_likelihood_converges_to_the_closed_form():
    model = make_model()
    model.energy = GaussianEnergy(D)
    x = torch.randn(8, D)
    truth = model.energy.log_density(x).sum(-1)
    gen = torch.Generator().manual_seed(0)
    estimates = {k: torch.stack([model.log_prob(x, model="energy", num_importance=k, generator=gen)
                                 for _ in range(10)]) for k in (4, 64, 512)}
    spread = {k: float(v.std(0).mean()) for k, v in estimates.items()}
    error = {k: float((v.mean(0) - truth).abs().max()) for k, v in estimates.items()}
    # The spread falls like 1/sqrt(K) (ratios 4 and 2.8 here) and the mean settles on the truth.
    assert spread[4] > 3 * spread[64] and spread[64] > 1.8 * spread[512]
    assert error[512] < 0.1 and error[512] < error[4]


def test_energy_sampling_and_conditional_mean_follow_the_energy():
    model = make_model()
    model.energy = GaussianEnergy(D)
    gen = torch.Generator().manual_seed(0)
    n = 3000
    x = torch.zeros(n, D)
    observed = torch.zeros(n, D, dtype=torch.bool)
    samples = model.sample(x, observed, model="energy", num_importance=128, generator=gen)
    assert torch.allclose(samples.mean(0), model.energy.a, atol=0.08)
    assert torch.allclose(samples.std(0), model.energy.b, atol=0.08)
    filled = model.conditional_mean(x[:4], observed[:4], num_importance=4096, generator=gen)
    assert torch.allclose(filled, model.energy.a.expand(4, D), atol=0.05)
    proposal = model.conditional_mean(x[:4], observed[:4], model="proposal")
    assert torch.allclose(proposal, model.head.mean(model(x[:4], observed[:4])))


def test_sample_keeps_observed_values_in_both_modes():
    model = make_model()
    x = torch.randn(10, D)
    observed = torch.rand(10, D) < 0.5
    for which in ("energy", "proposal"):
        out = model.sample(x, observed, model=which, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[observed], x[observed]) and torch.isfinite(out).all()


def test_training_on_magic_reduces_both_losses(shared_data):
    data = load_table(shared_data / "tabular" / "magic.tsv.gz")
    head = MixtureOfGaussiansHead(10)
    torch.manual_seed(0)
    net = ResMLP(data.dim, None, head.params_per_variable, width=64, depth=2, context=16)
    model = ACEModel(net, head, energy_width=64, energy_depth=2)
    valid = data.split("valid")[:256]

    def evaluate():
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return [float(v) for v in model.losses(valid, generator=gen)]

    before = evaluate()
    optim = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss = model.loss(data.train_batch(64, gen), generator=gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
    after = evaluate()
    assert after[0] < before[0] - 0.2 and after[1] < before[1] - 0.2, (before, after)


def test_losses_use_the_same_nodes_and_skip_missing_cells():
    model = make_model()
    x = torch.randn(6, D)
    x[0, 1] = float("nan")
    node = torch.zeros(6, D, dtype=torch.bool)
    proposal, energy = model.losses(x, node, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(proposal) and torch.isfinite(energy)
    clean = x.clone()
    clean[0, 1] = 0.0
    expect = -model.head.log_prob(model(clean, node), clean)
    expect = torch.where(torch.isnan(x), 0.0, expect).sum(-1) / torch.tensor([2.0, 3, 3, 3, 3, 3])
    assert torch.allclose(proposal, expect.mean())
    assert torch.allclose(model.loss(x, node, generator=torch.Generator().manual_seed(0)), proposal + energy)


def test_state_dict_round_trip():
    model = make_model()
    other = make_model()
    for p in other.parameters():
        nn.init.normal_(p)
    other.load_state_dict(model.state_dict())
    x = torch.randn(5, D)
    a = model.log_prob(x, generator=torch.Generator().manual_seed(0))
    b = other.log_prob(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_energy_net_clips_and_checks():
    net = EnergyNet(4, 2, width=8, depth=1)
    with torch.no_grad():
        net.output.bias.fill_(100.0)
    energy = net(torch.randn(5), torch.randint(0, 4, (5,)), torch.randn(5, 2))
    assert energy.shape == (5,) and torch.all(energy == 30.0)
    with pytest.raises(ValueError, match="MixtureOfGaussiansHead"):
        ACEModel(ResMLP(3, None, 4, context=4), CategoricalHead(4))
    with pytest.raises(ValueError, match="context"):
        ACEModel(ResMLP(3, None, 30), MixtureOfGaussiansHead(10))
    with pytest.raises(ValueError, match="model"):
        make_model().log_prob(torch.randn(2, D), model="both")


def test_from_config():
    head = MixtureOfGaussiansHead(10)
    model = ACEModel.from_config({"kind": "resmlp", "width": 16, "depth": 1, "energy_width": 24},
                                 {"dim": 4, "num_classes": None, "out_features": head.params_per_variable},
                                 head, num_importance=5, strategy="mac")
    assert model.network.context == 64 and model.energy.input.out_features == 24
    assert model.num_importance == 5 and math.isfinite(model.loss(torch.randn(3, 4)).item())
