import pytest
import torch
from torch import nn

from anyorder.heads import CategoricalHead
from anyorder.model import AnyOrderModel
from anyorder.nets import NodeNetwork
from anyorder.nets.transformer import Transformer, attention

B, D, K = 3, 7, 5


def make_net(**kwargs) -> Transformer:
    """A tiny net with a random output layer (the real init zeroes it, hiding all signal)."""
    torch.manual_seed(0)
    net = Transformer(D, K, K, width=16, depth=2, heads=2, **kwargs).eval()
    nn.init.normal_(net.head.weight)
    return net


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(K, (B, D), generator=g), torch.rand(B, D, generator=g) < 0.5


def test_output_shape_and_initial_zero_output():
    x, observed = inputs()
    net = Transformer(D, K, 11, width=16, depth=2, heads=4)
    out = net(x, observed)
    assert out.shape == (B, D, 11) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros_like(out))       # zero-init output layer
    with pytest.raises(ValueError, match=r"\[B, 7\]"):
        net(x[:, :5], observed[:, :5])


@pytest.mark.parametrize("bias", ["none", "alibi"])
def test_output_ignores_unobserved_values(bias):
    net = make_net(attention_bias=bias)
    x, observed = inputs()
    changed = torch.where(observed, x, (x + 1 + torch.arange(D)) % K)
    assert not torch.equal(changed, x)
    with torch.no_grad():
        assert torch.equal(net(x, observed), net(changed, observed))
        assert torch.equal(net(x, observed), net(torch.where(observed, x, -1), observed))


@pytest.mark.parametrize("bias", ["none", "alibi"])
def test_attention_is_bidirectional(bias):
    net = make_net(attention_bias=bias)
    x, _ = inputs()
    observed = torch.ones(B, D, dtype=torch.bool)
    with torch.no_grad():
        base = net(x, observed)
        for j in (0, D - 1):
            y = x.clone()
            y[:, j] = (y[:, j] + 1) % K
            other = net(y, observed)
            rest = [i for i in range(D) if i != j]
            assert (other[:, rest] - base[:, rest]).abs().amax(-1).gt(1e-6).all()
        # the number of observed variables alone changes every output too
        fewer = observed.clone()
        fewer[:, 3] = False
        assert (net(x, fewer)[:, :3] - base[:, :3]).abs().amax(-1).gt(1e-6).all()


def test_matmul_flops_by_hand():
    net = Transformer(dim=5, num_classes=4, out_features=3, width=8, depth=2, heads=2, mlp=12)
    tokens = 4 * 5                              # batch 4, D = 5
    per_block = (2 * tokens * 8 * 24           # QKV
                 + 2 * 4 * 2 * 5 * 5 * 4       # scores: B·heads·(2·D·D·head_dim)
                 + 2 * 4 * 2 * 5 * 5 * 4       # attention · V
                 + 2 * tokens * 8 * 8          # output projection
                 + 2 * tokens * 8 * 12 * 2)    # MLP up and down
    assert per_block == 21120
    assert net.matmul_flops(4) == 2 * per_block + 2 * tokens * 8 * 3 == 43200


def test_gradient_reaches_every_parameter():
    net = make_net(dropout=0.1).train()
    x, observed = inputs()
    observed[0] = False                         # |s| = 0 and the mask token occur
    loss = nn.functional.cross_entropy(net(x, observed).reshape(-1, K), x.reshape(-1))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_alibi_bias_is_symmetric_and_local():
    net = Transformer(D, K, K, width=16, depth=1, heads=2, attention_bias="alibi")
    bias = net.bias
    assert bias.shape == (2, D, D) and torch.equal(bias, bias.transpose(1, 2))
    assert bias[0, 3, 3] == 0 and bias[0, 3, 4] == -1 and bias[1, 3, 5] == -1 and bias[1, 3, 6] == -1.5
    assert "bias" not in net.state_dict()          # rebuilt from the config, not stored
    with pytest.raises(ValueError, match="attention_bias"):
        Transformer(D, K, K, width=16, depth=1, heads=2, attention_bias="rope")


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_paths_compute_softmax_attention(dtype, tolerance, with_bias):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=gen) for _ in range(3))
    bias = -torch.rand(3, 7, 7, generator=gen) * 3 if with_bias else None
    scores = q.double() @ k.double().transpose(-1, -2) / 8 ** 0.5 + (0 if bias is None else bias.double())
    exact = torch.softmax(scores, -1) @ v.double()
    cast = lambda t: None if t is None else t.to(dtype)
    out = attention(cast(q), cast(k), cast(v), cast(bias))
    assert out.dtype == dtype and (out.double() - exact).abs().max() < tolerance


@pytest.mark.parametrize("bias", ["none", "alibi"])
def test_forward_at_is_the_full_pass_at_one_variable_per_row(bias):
    net = make_net(attention_bias=bias)
    x, observed = inputs()
    var = torch.tensor([0, 3, 6])
    with torch.no_grad():
        full = net(x, observed)[torch.arange(B), var]
        assert torch.allclose(net.forward_at(x, observed, var), full, atol=1e-6)
        assert torch.equal(NodeNetwork.forward_at(net, x, observed, var), full)    # the base's default


def test_queries_through_forward_at_match_full_passes(monkeypatch):
    model = AnyOrderModel(make_net(attention_bias="alibi"), CategoricalHead(K), protocol="strided(3)")
    x, mask = inputs(1)
    gen = lambda: torch.Generator().manual_seed(0)
    with torch.no_grad():
        fast = (model.log_prob(x), model.log_prob(x, mask), model.log_prob(x, mask, "one-step", 4, gen()),
                model.sample(x, mask, generator=gen()))
        monkeypatch.setattr(model.network, "forward_at", lambda *a: NodeNetwork.forward_at(model.network, *a))
        full = (model.log_prob(x), model.log_prob(x, mask), model.log_prob(x, mask, "one-step", 4, gen()),
                model.sample(x, mask, generator=gen()))
    for a, b in zip(fast[:3], full[:3]):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(fast[3], full[3])
