import pytest
import torch
from torch import nn

from anyorder.nets.unet import UNet


def unet(shape, out_features=3, **kwargs):
    C, H, W = shape
    torch.manual_seed(0)
    kwargs = {"channels": 8, **kwargs}
    return UNet(C * H * W, 256, out_features, shape, **kwargs)


def randomise_zeroed_layers(net):
    """Give the zero-initialised output/residual convs random weights, so that inputs
    reach the output through every path (attention projections stay zero)."""
    torch.manual_seed(0)
    net.conv_out.reset_parameters()
    for module in net.modules():
        if hasattr(module, "conv2"):
            module.conv2.reset_parameters()
    return net


def inputs(net, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dim = net.config["dim"]
    x = torch.randint(256, (batch, dim), generator=gen)
    observed = torch.rand(batch, dim, generator=gen) < 0.5
    return x, observed


@pytest.mark.parametrize("shape, mult, attention", [
    ((1, 8, 8), (1, 2), (4,)),
    ((1, 28, 28), (1, 2), (14,)),
    ((3, 32, 32), (1,), ()),
])
def test_output_shape_and_zero_init(shape, mult, attention):
    net = unet(shape, out_features=5, channel_mult=mult, attention_resolutions=attention)
    x, observed = inputs(net)
    params = net(x, observed)
    assert params.shape == (2, x.shape[1], 5)
    assert torch.count_nonzero(params) == 0          # the last conv starts at zero
    assert torch.count_nonzero(randomise_zeroed_layers(net)(x, observed)) > 0


def test_unobserved_values_are_invisible():
    net = randomise_zeroed_layers(unet((3, 8, 8), channel_mult=(1, 2), attention_resolutions=(8, 4)))
    x, observed = inputs(net)
    changed = torch.where(observed, x, (x + 77) % 256)
    assert torch.equal(net(x, observed), net(changed, observed))
    visible = torch.where(observed, (x + 77) % 256, x)
    assert not torch.allclose(net(x, observed), net(visible, observed))


def test_observed_count_conditions_the_output():
    net = randomise_zeroed_layers(unet((1, 8, 8), channel_mult=(1,)))
    x, observed = inputs(net, batch=1)
    base = net(x, observed)
    net.embed[-1].bias.data += 1.0                    # the count embedding reaches the output
    assert not torch.allclose(base, net(x, observed))


def test_output_channels_map_to_c_h_w_variables():
    """Output channel c·P + p at (h, w) must be params[:, c·H·W + h·W + w, p]."""
    shape, P = (3, 4, 6), 5
    net = unet(shape, out_features=P, channel_mult=(1, 2))
    B, (C, H, W) = 2, shape
    # code[b, c, p, h, w] = index of (b, c, h, w, p) in a [B, C, H, W, P] array
    code = torch.arange(B * C * H * W * P, dtype=torch.float32).view(B, C, H, W, P)
    code = code.permute(0, 1, 4, 2, 3).reshape(B, C * P, H, W)
    net.conv_out.register_forward_hook(lambda module, args, out: code)
    params = net(*inputs(net, batch=B))
    assert torch.equal(params.reshape(-1), torch.arange(B * C * H * W * P, dtype=torch.float32))


def test_perturbation_is_felt_near_its_pixel():
    """Without attention only convolutions carry information, so changing the observed
    value at (c, h, w) moves the outputs around (h, w) far more than those beyond the
    receptive field (reached only through GroupNorm statistics). H ≠ W catches a
    transposed reshape."""
    shape, (h, w) = (2, 16, 40), (9, 31)
    net = randomise_zeroed_layers(unet(shape, channel_mult=(1,), blocks_per_level=1))
    x, _ = inputs(net, batch=1)
    observed = torch.ones_like(x, dtype=torch.bool)
    moved = x.view(2, 16, 40).clone()
    moved[1, h, w] = (moved[1, h, w] + 128) % 256
    with torch.no_grad():
        change = (net(x, observed) - net(moved.view(1, -1), observed)).abs()
    change = change.view(2, 16, 40, -1).amax(dim=(0, 3))                   # [H, W]
    local = torch.nn.functional.avg_pool2d(change[None], 5, stride=1, padding=2)[0]
    peak_h, peak_w = divmod(int(local.argmax()), 40)
    assert abs(peak_h - h) <= 1 and abs(peak_w - w) <= 1
    far = change[:, :w - 13].max()                    # 12 = the 3x3 convs' receptive radius
    assert local[h, w] > 5 * far > 0


def test_matmul_flops_hand_count():
    B, L, c, e = 3, 16, 8, 32                         # batch, 4x4 positions, channels, embedding
    net = unet((1, 4, 4), out_features=3, channel_mult=(1,), blocks_per_level=1)

    def res(c_in, c_out):
        skip = 2 * B * L * c_out * c_in if c_in != c_out else 0
        return 2 * B * L * c_out * c_in * 9 + 2 * B * e * c_out + 2 * B * L * c_out * c_out * 9 + skip

    attention = 2 * B * L * c * 3 * c + 4 * B * L * L * c + 2 * B * L * c * c
    expected = (2 * B * (c * e + e * e)               # count embedding MLP
                + 2 * B * L * c * 2 * 9               # input conv over [values, mask]
                + res(c, c)                           # down
                + res(c, c) + attention + res(c, c)   # middle
                + 2 * res(2 * c, c)                   # up, with skip connections
                + 2 * B * L * 3 * c * 9)              # output conv
    assert net.matmul_flops(B) == expected


def test_matmul_flops_scale_with_batch_and_leave_the_net_alone():
    net = unet((3, 32, 32), channel_mult=(1, 2, 2), attention_resolutions=(16,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert net.matmul_flops(4) == 4 * net.matmul_flops(1) > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(module._forward_hooks for module in net.modules())


def test_float64_weights():
    net = randomise_zeroed_layers(unet((1, 8, 8), channel_mult=(1, 2))).double()
    params = net(*inputs(net))
    assert params.dtype == torch.float64


def test_clear_errors_for_sizes_that_do_not_fit():
    with pytest.raises(ValueError, match="at most 3 entries"):
        unet((1, 28, 28), channel_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"choose from \[8, 4\]"):
        unet((1, 8, 8), channel_mult=(1, 2), attention_resolutions=(16,))
    with pytest.raises(ValueError, match="C·H·W"):
        UNet(100, 256, 3, (1, 8, 8))
    assert isinstance(unet((1, 28, 28), channel_mult=(1, 2, 2)), nn.Module)


def test_value_embedding_keeps_unobserved_values_invisible():
    net = randomise_zeroed_layers(unet((3, 8, 8), channel_mult=(1,), attention_resolutions=(8,),
                                       embed_values=True))
    x, observed = inputs(net)
    changed = torch.where(observed, x, (x + 77) % 256)
    assert torch.equal(net(x, observed), net(changed, observed))
    base = net(x, observed)
    level = x[observed][0]                                # a level some observed variable holds
    net.value_embedding.weight.data[level] += 1.0         # the level embedding reaches the output
    assert not torch.allclose(base, net(x, observed))
    assert net.conv_in.out_channels == 6 and net.value_embedding.embedding_dim == 2


def test_paper_unet_matches_the_official_architecture():
    """The official MAC/ARDM CIFAR-10 network: 32 ResBlocks down, 1 + 1 in the middle and 33 up
    (67), attention after each of them but the middle's second (66), ARDM's quarter-width
    value embedding, 141.1 M parameters."""
    from anyorder.config import load_config
    from anyorder.nets import build_net
    from anyorder.nets.unet import Attention, ResBlock
    for preset in ("cifar10-paper", "imagenet32-paper"):
        with torch.device("meta"):
            net = build_net(load_config(preset).net, dim=3072, num_classes=256, out_features=256, shape=(3, 32, 32))
        count = sum(p.numel() for p in net.parameters())
        print(f"{preset}: {count / 1e6:.2f} M parameters")
        assert abs(count / 141.1e6 - 1) < 0.02
        assert sum(isinstance(m, ResBlock) for m in net.modules()) == 67
        assert sum(isinstance(m, Attention) for m in net.modules()) == 66
        assert net.config["embed_values"]
