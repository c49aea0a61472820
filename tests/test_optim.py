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


def muon_model():
    from anyorder.heads import CategoricalHead
    from anyorder.model import AnyOrderModel
    from anyorder.nets.path_transformer import PathTransformer
    torch.manual_seed(0)
    return AnyOrderModel(PathTransformer(6, 5, out_features=5, width=16, depth=2, heads=2, mlp=32),
                         CategoricalHead(5))


def test_muon_steps_the_hidden_matrices_and_adamw_the_rest():
    from anyorder.config import OptimConfig
    from anyorder.optim import MuonAdamW, optimizer_for
    model = muon_model()
    optimizer = optimizer_for(model, OptimConfig(kind="muon", weight_decay=0.1))
    assert isinstance(optimizer, MuonAdamW)
    muon = names(model, optimizer.muon.param_groups[0])
    assert muon == {f"network.blocks.{i}.{layer}.weight" for i in range(2) for layer in ("qkv", "proj", "fc", "out")}
    decay, rest = optimizer.adamw.param_groups
    assert names(model, decay) == {"network.head.weight"}          # the output layer: AdamW, decayed
    assert {"network.value.token.weight", "network.position", "network.head.bias"} <= names(model, rest)
    assert muon | names(model, decay) | names(model, rest) == {name for name, _ in model.named_parameters()}
    assert len(muon) + len(names(model, decay)) + len(names(model, rest)) == len(list(model.parameters()))


def test_a_first_muon_step_is_orthogonal_and_an_adamw_step_is_a_sign():
    """From rest, Muon moves a matrix along U·Vᵀ of its gradient G = U·S·Vᵀ, every singular
    direction at about the same rate, scaled to AdamW's step size 0.2·lr·sqrt(max(m, n));
    AdamW's first step is lr·sign(G) on every other parameter."""
    from anyorder.config import OptimConfig
    from anyorder.optim import optimizer_for
    model, lr = muon_model(), 1e-2
    optimizer = optimizer_for(model, OptimConfig(kind="muon", lr=lr))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    optimizer.step()
    hidden = names(model, optimizer.muon.param_groups[0])
    for name, p in model.named_parameters():
        step = before[name] - p.detach()
        if name in hidden:
            U, S, Vh = torch.linalg.svd(p.grad, full_matrices=False)
            unit = step / (0.2 * lr * max(p.shape) ** 0.5)
            singular = torch.linalg.svdvals(unit)
            assert singular.min() > 0.45 and singular.max() < 1.55, name            # Newton–Schulz's band, 0.5–1.5
            assert torch.nn.functional.cosine_similarity((U @ Vh).flatten(), unit.flatten(), dim=0) > 0.9, name
        else:
            assert torch.allclose(step, lr * p.grad.sign(), atol=1e-6), name
