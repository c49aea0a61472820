"""Heads behave like distributions: normalised densities, samplers matching their laws."""

import math

import pytest
import torch

from anyorder.heads import CategoricalHead, MixtureOfGaussiansHead


def test_categorical_log_prob_and_sampling_frequencies():
    head = CategoricalHead(5)
    logits = torch.randn(1, 1, 5) * 2
    probs = torch.softmax(logits[0, 0].double(), -1)
    values = torch.arange(5).view(1, 5)
    lp = head.log_prob(logits.expand(1, 5, 5), values)
    assert torch.allclose(lp[0].double().exp(), probs, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    draws = head.sample(logits[0].expand(100_000, 5), generator=gen)
    freq = torch.bincount(draws, minlength=5).double() / 100_000
    assert 0.5 * (freq - probs).abs().sum() < 0.01
    hot = head.sample(logits[0].expand(100_000, 5), temperature=0.5, generator=gen)
    sharp = torch.softmax(logits[0, 0].double() / 0.5, -1)
    assert 0.5 * (torch.bincount(hot, minlength=5).double() / 100_000 - sharp).abs().sum() < 0.01
    assert (head.sample(logits[0].expand(3, 5), temperature=0) == probs.argmax()).all()


def test_mixture_density_integrates_to_one_and_samples_match_moments():
    head = MixtureOfGaussiansHead(3)
    params = torch.tensor([[0.5, -1.0, 0.0, -2.0, 0.5, 3.0, -1.0, 0.2, 0.4]])
    grid = torch.linspace(-15, 20, 200_001)
    density = head.log_prob(params.expand(len(grid), 9).unsqueeze(1), grid.unsqueeze(1)).exp().squeeze(1)
    assert torch.trapezoid(density.double(), grid.double()).item() == pytest.approx(1.0, abs=1e-4)
    log_w, means, log_s = head.mixture(params)
    mean = (log_w.exp() * means).sum().item()
    var = (log_w.exp() * (log_s.exp() ** 2 + means ** 2)).sum().item() - mean ** 2
    draws = head.sample(params.expand(200_000, 9), generator=torch.Generator().manual_seed(0)).double()
    assert draws.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 200_000))
    assert draws.var().item() == pytest.approx(var, rel=0.02)
    assert head.mean(params).item() == pytest.approx(mean, abs=1e-5)


def test_mixture_scales_stay_bounded():
    head = MixtureOfGaussiansHead(2, min_log_scale=-4.0, max_log_scale=3.0)
    _, _, log_s = head.mixture(torch.tensor([[0, 0, 0, 0, -1e4, 1e4]], dtype=torch.float32))
    assert log_s.min().item() >= -4.0 and log_s.max().item() <= 3.0


@pytest.mark.parametrize("head,x,message", [
    (CategoricalHead(4), torch.tensor([0, 4]), r"0\.\.3"),
    (CategoricalHead(4), torch.tensor([0.5]), "integer"),
    (MixtureOfGaussiansHead(2), torch.tensor([0, 1]), "floating"),
    (MixtureOfGaussiansHead(2), torch.tensor([0.0, float("inf")]), "non-finite"),
])
def test_value_checks(head, x, message):
    with pytest.raises(ValueError, match=message):
        head.check_values(x)


def test_tiny_temperatures_give_the_mode_and_bad_parameters_are_refused():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 7) * 3
    for temperature in (5e-324, 1e-300, 1e-45, 1e-30, 1e-8):   # below float32: rounds to 0
        assert torch.equal(CategoricalHead(7).sample(logits, temperature, gen), logits.argmax(-1))
    mog = MixtureOfGaussiansHead(2)
    params = torch.randn(50, 6)
    assert torch.isfinite(mog.sample(params, 1e-45, gen)).all()
    for head, bad in ((CategoricalHead(7), logits), (mog, params)):
        bad = bad.clone()
        bad[3, 1] = float("nan")
        with pytest.raises(ValueError, match="non-finite parameters"):
            head.sample(bad, 1.0, gen)
