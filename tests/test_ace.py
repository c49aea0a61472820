import math

import pytest
import torch
from torch import nn

from anyorder import checkpoint
from anyorder.ace import ACEModel, EnergyNet
from anyorder.build import build_model
from anyorder.config import Config, load_config
from anyorder.data.tables import load_table
from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead
from anyorder.nets import NodeNetwork
from anyorder.nets.resmlp import ResMLP

D = 3


def make_model(dim=D, context=8, **kwargs):
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(10)
    net = ResMLP(dim, None, head.params_per_variable, width=32, depth=2, context=context)
    return ACEModel(net, head, energy_width=32, energy_depth=2, **{"eval_importance": 64, **kwargs})


class GaussianEnergy(nn.Module):
    """E_j(y) = ((y - a_j) / b_j)^2 / 2, so Z_j = sqrt(2π) b_j exactly (no clipping)."""

    def __init__(self, dim):
        super().__init__()
        self.a = torch.linspace(-0.5, 0.5, dim)
        self.b = torch.linspace(0.6, 1.2, dim)

    def forward(self, values, var, context, x_obs, observed):
        return 0.5 * ((values - self.a[var, None]) / self.b[var, None]) ** 2

    def log_density(self, x):
        return torch.distributions.Normal(self.a, self.b).log_prob(x)


class ProposalEnergy(nn.Module):
    """E(y) = −log q(y | context) + 3, with the network passing its head params as context."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, values, var, context, x_obs, observed):
        return 3.0 - self.head.log_prob(context.unsqueeze(1).expand(-1, values.shape[1], -1), values)


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
    energy = net(torch.randn(5, 3), torch.randint(0, 4, (5,)), torch.randn(5, 2), torch.randn(5, 4),
                 torch.rand(5, 4) < 0.5)
    assert energy.shape == (5, 3) and torch.all(energy == 30.0)
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


class CountingEnergy(nn.Module):
    """E = 0, recording how many candidates per edge each call scores."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def forward(self, values, var, context, x_obs, observed):
        self.counts.append(values.shape[1])
        return torch.zeros_like(values) + 0 * context.sum(-1, keepdim=True)


def test_training_and_queries_use_their_own_importance_counts():
    model = make_model(num_importance=5, eval_importance=9)
    model.energy = CountingEnergy()
    x = torch.randn(4, D)
    model.loss(x)
    model.log_prob(x)
    model.log_prob(x, num_importance=3)
    assert model.energy.counts == [6] + [10] * D + [4] * D      # the data value + the draws


def test_warm_up_leaves_the_energy_term_out_of_the_loss_but_in_the_graph():
    model = make_model(energy_warmup=3)
    x, node = torch.randn(6, D), torch.rand(6, D) < 0.3
    terms = lambda: model.losses(x, node, torch.Generator().manual_seed(0))
    loss = lambda: model.loss(x, node, torch.Generator().manual_seed(0))
    proposal, energy = terms()
    assert torch.allclose(loss(), proposal + energy)          # no schedule: the plain objective
    for step, weight in ((0, 0.0), (2, 0.0), (3, 1.0), (10, 1.0)):
        model.begin_step(step)
        assert torch.allclose(loss(), proposal + weight * energy)
    model.begin_step(2)
    model.zero_grad()
    loss().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert all(torch.all(g == 0) for name, g in grads.items() if name.startswith("energy."))
    assert any(torch.any(g != 0) for name, g in grads.items() if name.startswith("network."))


def test_trainer_warms_up_the_energy_network(tmp_path, shared_data):
    from anyorder.train import Training
    config = load_config("magic-ace-cpu", [f"data.source={shared_data / 'tabular' / 'magic.tsv.gz'}",
                                           "net.width=16", "net.depth=1", "net.context=4", "net.energy_width=8",
                                           "net.energy_depth=1", "model.energy_warmup=3", "train.batch_size=8",
                                           "train.device=cpu"])
    trainer = Training(config)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moved = lambda prefix: any(not torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items()
                               if k.startswith(prefix))
    for _ in range(3):
        trainer.one_step()
    assert moved("network.") and not moved("energy.")
    trainer.one_step()
    assert moved("energy.")


def test_energy_sees_observed_values_and_the_mask_but_never_unobserved_values():
    net = EnergyNet(4, 2, width=8, depth=1)
    nn.init.normal_(net.output.weight)
    gen = torch.Generator().manual_seed(0)
    values, var, context = torch.randn(6, 3, generator=gen), torch.tensor([0, 1, 2, 3, 0, 1]), torch.randn(6, 2)
    x, observed = torch.randn(6, 4, generator=gen), torch.rand(6, 4, generator=gen) < 0.5
    observed[:, 2] = True
    energy = lambda x, observed: net(values, var, context, torch.where(observed, x, 0.0), observed)
    base = energy(x, observed)
    assert torch.equal(energy(torch.where(observed, x, x + 5), observed), base)
    assert not torch.allclose(energy(x + 1, observed), base)
    fewer = observed.clone()
    fewer[:, 2] = False
    assert not torch.allclose(energy(x, fewer), base)
    legacy = EnergyNet(4, 2, width=8, depth=1, observed=False)
    assert torch.equal(legacy(values, var, context, x, observed), legacy(values, var, context, x + 1, ~observed))


def test_importance_sampled_normaliser_is_unbiased():
    model = make_model()
    model.energy = GaussianEnergy(D)
    n, var = 4000, torch.full((4000,), 2)
    x, node = torch.zeros(n, D), torch.zeros(n, D, dtype=torch.bool)
    with model.query_options(num_importance=4):
        log_p = model.edge_log_prob(x, node, var)
    z = torch.exp(-model.energy(x[:, 2:3], var, None, x, node).squeeze(1) - log_p)   # Ẑ of each row
    truth = math.sqrt(2 * math.pi) * float(model.energy.b[2])
    assert abs(z.mean().item() - truth) < 4 * z.std().item() / math.sqrt(n)
    assert z.std().item() > 0.01 * truth                                   # four draws: noisy, not biased


def test_checkpoints_from_before_the_energy_options_rebuild_their_old_energy_network():
    config = load_config("magic-ace-cpu")
    raw = config.to_dict()
    for key in ("energy_observed", "energy_warmup", "eval_importance"):
        del raw["model"][key]
    old = Config.from_dict(checkpoint.with_added_keys(raw))
    assert (old.model.energy_observed, old.model.energy_warmup, old.model.eval_importance) == (False, 0, 20000)
    meta = {"kind": "table", "dim": 10, "num_classes": None}
    model, fresh = build_model(old, meta), build_model(config, meta)
    assert model.energy.input.in_features == 1 + 10 + 64 and model.energy.output.in_features == 128
    assert fresh.energy.input.in_features == 1 + 3 * 10 + 64 and fresh.energy.output.in_features == 128 + 20
