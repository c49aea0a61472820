"""Precision choice: bf16 autocast only where bf16 is native; heads and samplers stay in float32."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from anyorder.config import ConfigError
from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead
from anyorder.model import AnyOrderModel
from anyorder.nets.base import NodeNetwork
from anyorder.precision import autocast_for, bf16_native
from tiny import TinyNet

CPU = torch.device("cpu")


def autocast_state(context):
    with context:
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")


def test_autocast_for_follows_the_precision_and_the_probe():
    assert autocast_state(autocast_for("fp32", CPU))[0] is False
    assert autocast_state(autocast_for("bf16", CPU)) == (True, torch.bfloat16)
    assert autocast_state(autocast_for("auto", CPU))[0] is bf16_native(CPU)
    assert bf16_native(CPU) is bf16_native(CPU)          # cached: one probe per setting
    with pytest.raises(ConfigError, match="train.precision must be"):
        autocast_for("fp16", CPU)


def test_auto_keeps_fp32_where_bf16_runs_on_the_generic_kernel():
    # Without oneDNN, torch multiplies bf16 with a generic loop ~50x slower than fp32.
    with torch.backends.mkldnn.flags(enabled=False):
        assert bf16_native(CPU) is False
        assert autocast_state(autocast_for("auto", CPU))[0] is False


def test_heads_compute_in_float32_from_bf16_parameters():
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(64, 8, 27, generator=gen)).bfloat16()
    x = torch.randint(27, (64, 8), generator=gen)
    exact = F.log_softmax(logits.double(), -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    in_bf16 = F.log_softmax(logits, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    assert (in_bf16.double() - exact).abs().max() > 1e-3          # bf16 maths would be visible
    with autocast_for("bf16", CPU):
        lp = CategoricalHead(27).log_prob(logits, x)
    assert lp.dtype == torch.float32 and (lp.double() - exact).abs().max() < 1e-5

    head = MixtureOfGaussiansHead(3)
    params = torch.randn(64, 8, 9, generator=gen).bfloat16()
    values = torch.randn(64, 8, generator=gen)
    with autocast_for("bf16", CPU):
        lp, mean = head.log_prob(params, values), head.mean(params)
    exact_lp, exact_mean = head.log_prob(params.double(), values.double()), head.mean(params.double())
    assert lp.dtype == mean.dtype == torch.float32
    assert (lp.double() - exact_lp).abs().max() < 1e-4 and (mean.double() - exact_mean).abs().max() < 1e-5


class RecordDraws(TorchFunctionMode):
    """Records the dtype of every probability tensor torch.multinomial draws from."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.multinomial:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


class RealNet(NodeNetwork):
    """A linear node network over real values and the mask."""

    def __init__(self, dim, out_features):
        super().__init__()
        self.dim, self.out = dim, out_features
        self.linear = nn.Linear(2 * dim, dim * out_features)

    def forward(self, x_in, observed):
        return self.linear(torch.cat([x_in, observed.float()], -1)).view(len(x_in), self.dim, self.out)


@pytest.mark.parametrize("data", ["categorical", "real"])
def test_samplers_and_likelihoods_stay_float32_under_bf16(data):
    D = 4
    if data == "categorical":
        model, x = AnyOrderModel(TinyNet(D, 3), CategoricalHead(3)), torch.randint(3, (5, D))
    else:
        model, x = AnyOrderModel(RealNet(D, 6), MixtureOfGaussiansHead(2)), torch.randn(5, D)
    observed = torch.tensor([[True, False, False, True]] * 5)
    with autocast_for("bf16", CPU), RecordDraws() as record:
        assert model(x, observed).dtype == torch.bfloat16          # the network does run in bf16
        filled = model.sample(x, observed, generator=torch.Generator().manual_seed(0))
        logp = model.log_prob(x)
    assert record.dtypes and all(d in (torch.float32, torch.float64) for d in record.dtypes)
    assert logp.dtype == torch.float32 and filled.dtype == x.dtype
