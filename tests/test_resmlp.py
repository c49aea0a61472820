import pytest
import torch

from anyorder.nets.resmlp import ResMLP


def test_shapes_continuous_and_context():
    net = ResMLP(7, None, 30, width=32, depth=2, context=5)
    x = torch.randn(4, 7)
    observed = torch.rand(4, 7) < 0.5
    assert net(x, observed).shape == (4, 7, 30)
    params, context = net.forward_with_context(x, observed)
    assert params.shape == (4, 7, 30) and context.shape == (4, 7, 5)
    assert torch.equal(params, net(x, observed))


def test_shapes_categorical():
    net = ResMLP(6, 4, 4, width=16, depth=1)
    x = torch.randint(0, 4, (3, 6))
    assert net(x, torch.ones(3, 6, dtype=torch.bool)).shape == (3, 6, 4)


@pytest.mark.parametrize("num_classes", [None, 5])
def test_output_ignores_unobserved_values(num_classes):
    torch.manual_seed(0)
    net = ResMLP(8, num_classes, 3, width=32, depth=3, context=2)
    observed = torch.rand(16, 8) < 0.5
    if num_classes is None:
        x, other = torch.randn(16, 8), torch.randn(16, 8)
        other[0, ~observed[0]] = float("nan")  # NaN holes must not leak either
    else:
        x, other = torch.randint(0, 5, (16, 8)), torch.randint(0, 5, (16, 8))
    other = torch.where(observed, x, other)
    a, ca = net.forward_with_context(x, observed)
    b, cb = net.forward_with_context(other, observed)
    assert torch.equal(a, b) and torch.equal(ca, cb)
    # ... while observed values do matter
    flipped = x.clone()
    i, j = observed.nonzero()[0]
    flipped[i, j] = flipped[i, j] + 1 if num_classes is None else (flipped[i, j] + 1) % 5
    assert not torch.equal(net(flipped, observed)[i], a[i])


def test_mask_matters_and_gradients_flow():
    net = ResMLP(5, None, 2, width=16, depth=2)
    x = torch.zeros(2, 5)
    a = net(x, torch.zeros(2, 5, dtype=torch.bool))
    b = net(x, torch.ones(2, 5, dtype=torch.bool))
    assert not torch.allclose(a, b)
    b.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_matmul_flops():
    net = ResMLP(10, None, 30, width=64, depth=2, context=4)
    linear = 20 * 64 + 2 * 2 * 64 * 64 + 64 * 10 * 34
    assert net.matmul_flops(8) == 2 * 8 * linear


def test_bad_sizes():
    with pytest.raises(ValueError, match="width"):
        ResMLP(3, None, 2, width=0)
