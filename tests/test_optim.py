"""Weight decay reaches the matrices of linear and convolutional layers, and nothing else."""

import torch

from anyorder.nets.transformer import Transformer
from anyorder.nets.unet import UNet
from anyorder.optim import parameter_groups


def names(model, group):
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_transformer_groups_split_matrices_from_the_rest():
    net = Transformer(6, 5, out_features=5, width=8, depth=1, heads=2, mlp=16)
    decay, rest = parameter_groups(net, 0.1)
    assert (decay["weight_decay"], rest["weight_decay"]) == (0.1, 0.0)
    assert names(net, decay) == {"blocks.0.qkv.weight", "blocks.0.proj.weight", "blocks.0.fc.weight",
                                 "blocks.0.out.weight", "head.weight"}
    assert {"token.weight", "position", "cardinality.weight", "blocks.0.ln1.weight",
            "blocks.0.qkv.bias", "ln_f.bias", "head.bias"} <= names(net, rest)
    assert names(net, decay) | names(net, rest) == {name for name, _ in net.named_parameters()}
    assert not names(net, decay) & names(net, rest)


def test_unet_decays_convolutions_and_linears_but_not_group_norms():
    net = UNet(16, 4, 4, (1, 4, 4), channels=8, channel_mult=(1,), blocks_per_level=1)
    decay, rest = parameter_groups(net, 0.1)
    kinds = {name: type(m) for name, m in net.named_modules()}
    owner = {name: kinds[name.rpartition(".")[0]] for name, _ in net.named_parameters()}
    assert names(net, decay) == {n for n, kind in owner.items()
                                 if n.endswith(".weight") and kind in (torch.nn.Conv2d, torch.nn.Linear)}
    assert {owner[n] for n in names(net, rest) if n.endswith(".weight")} == {torch.nn.GroupNorm}


def test_adamw_shrinks_only_the_matrices():
    net = Transformer(6, 5, out_features=5, width=8, depth=1, heads=2, mlp=16)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(net, 0.5), lr=1.0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    decayed = names(net, optimizer.param_groups[0])
    for name, p in net.named_parameters():
        expected = before[name] * (0.5 if name in decayed else 1.0)    # decoupled decay: p -= lr·wd·p
        assert torch.allclose(p, expected), name
