"""Distribution heads: turn a network's per-variable parameters into univariate conditionals.

A head is the only part of an AO-ARM that knows the type of a variable. It reads
`params [B, D, P]` and behaves like a `torch.distributions` object per variable: `log_prob`
of values, `sample` of new values. Computation happens in float32 even when the network
ran in bf16: low-precision softmax/Gumbel sampling silently lowers the temperature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError


def _finite(params: torch.Tensor) -> torch.Tensor:
    """`params` unchanged, or a UserError: sampling from NaN/inf parameters has no meaning."""
    if not torch.isfinite(params).all():
        raise UserError("the network produced non-finite parameters (NaN or inf): its weights are "
                        "damaged or the run diverged")
    return params


class Head(nn.Module):
    """Interface: `params_per_variable` P, `log_prob`, `sample`, `check_values`, `blank`."""

    params_per_variable: int

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`[B, D, P]`, `[B, D]` -> log p(x_j | context) per variable `[B, D]` (float32)."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`[N, P]` -> one value per row `[N]`; temperature 0 gives the mode."""
        raise NotImplementedError

    def check_values(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise UserError when x cannot be values of this head."""
        raise NotImplementedError

    def blank(self, x: torch.Tensor) -> torch.Tensor:
        """The value written where a variable is unobserved, so networks never see it."""
        return torch.zeros_like(x)


class CategoricalHead(Head):
    """K-way categorical per variable: params are logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise UserError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.params_per_variable = num_classes

    def log_prob(self, params, x):
        logp = F.log_softmax(params.float(), dim=-1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def sample(self, params, temperature=1.0, generator=None):
        logits = _finite(params.float())
        if temperature == 0:
            return logits.argmax(-1)
        # Shifted so the largest logit is 0: dividing by a tiny temperature cannot overflow.
        probs = F.softmax((logits - logits.amax(-1, keepdim=True)) / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def check_values(self, x, name="x"):
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise UserError(f"{name} must hold integer category ids, got dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_classes):
            raise UserError(f"{name} values must lie in 0..{self.num_classes - 1}, "
                             f"got range {int(x.min())}..{int(x.max())}")


class MixtureOfGaussiansHead(Head):
    """Mixture of C Gaussians per variable: params are (logits, means, log-scales), P = 3C.

    Log-scales are soft-clamped to [min_log_scale, max_log_scale] so that a component
    cannot collapse onto one data point and send the likelihood to infinity.
    """

    def __init__(self, components: int = 10, min_log_scale: float = -7.0, max_log_scale: float = 5.0):
        super().__init__()
        if components < 1:
            raise UserError(f"components must be >= 1, got {components}")
        self.components = components
        self.params_per_variable = 3 * components
        self.min_log_scale, self.max_log_scale = min_log_scale, max_log_scale

    def mixture(self, params: torch.Tensor):
        """`[..., 3C]` -> log-weights, means, log-scales, each `[..., C]`."""
        logits, means, raw = params.float().split(self.components, dim=-1)
        span = self.max_log_scale - self.min_log_scale
        log_scales = self.min_log_scale + span * torch.sigmoid(raw - math.log(span / -self.min_log_scale - 1))
        return F.log_softmax(logits, -1), means, log_scales

    def log_prob(self, params, x):
        log_w, means, log_scales = self.mixture(params)
        z = (x.float().unsqueeze(-1) - means) * torch.exp(-log_scales)
        comp = -0.5 * z.square() - log_scales - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_w + comp, dim=-1)

    def sample(self, params, temperature=1.0, generator=None):
        log_w, means, log_scales = self.mixture(_finite(params))
        if temperature == 0:
            return means.gather(-1, log_w.argmax(-1, keepdim=True)).squeeze(-1)
        k = torch.multinomial(log_w.exp(), 1, generator=generator)
        mu, log_s = means.gather(-1, k).squeeze(-1), log_scales.gather(-1, k).squeeze(-1)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        return mu + temperature * log_s.exp() * noise

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """`[..., P]` -> the mixture's mean `[...]` (the MSE-optimal imputation)."""
        log_w, means, _ = self.mixture(params)
        return (log_w.exp() * means).sum(-1)

    def check_values(self, x, name="x"):
        if not x.is_floating_point():
            raise UserError(f"{name} must be a floating-point tensor for a continuous head, got {x.dtype}")
        if x.numel() and not torch.isfinite(x).all():
            raise UserError(f"{name} has non-finite values (NaN or inf) where values are required")
