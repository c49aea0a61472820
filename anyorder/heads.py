"""Distribution heads: turn a network's per-variable parameters into univariate conditionals.

A head is the only part of an AO-ARM that knows the type of a variable. It reads
`params [B, D, P]` and behaves like a `torch.distributions` object per variable: `log_prob`
of values, `sample` of new values. Computation happens in float32 even when the network
ran in bf16: low-precision softmax/Gumbel sampling silently lowers the temperature.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError, check_count


def _finite(params: torch.Tensor) -> torch.Tensor:
    """`params` unchanged, or a UserError: sampling from NaN/inf parameters has no meaning."""
    if not torch.isfinite(params).all():
        raise UserError("the network produced non-finite parameters (NaN or inf): its weights are "
                        "damaged or the run diverged")
    return params


def check_temperature(temperature: float) -> None:
    """A UserError unless `temperature` (the scale of every head's draws) is finite and >= 0."""
    try:
        bad = isinstance(temperature, (bool, str, bytes)) or temperature < 0 or not math.isfinite(temperature)
    except TypeError:           # None, a list: not a number at all
        bad = True
    if bad:
        raise UserError(f"temperature must be a finite number >= 0, got {temperature}")


def _sample_logits(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    """One category per row of logits `[N, K]` (float32, -inf for impossible ones) -> `[N]`;
    temperature 0 gives the mode."""
    if temperature == 0:
        return logits.argmax(-1)
    # Shifted so the largest logit is 0: dividing by a tiny temperature cannot overflow. A
    # temperature below float32's smallest normal would round to 0 and give 0/0 at the
    # largest logit: there the law is already the mode's, so the smallest normal stands in.
    temperature = max(temperature, torch.finfo(logits.dtype).tiny)
    probs = F.softmax((logits - logits.amax(-1, keepdim=True)) / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def count_levels(draws: torch.Tensor, width: int) -> torch.Tensor:
    """How many of M draws `[M, ...]` (level ids, any dtype) hit each level: `[..., width]`
    int64, by one scatter (no one-hot of the draws is ever built)."""
    flat = draws.reshape(len(draws), -1).T.long()                         # [cells, M]
    counts = torch.zeros(flat.shape[0], width, dtype=torch.long, device=draws.device)
    return counts.scatter_add_(1, flat, torch.ones_like(flat)).view(*draws.shape[1:], width)


class Head(nn.Module):
    """Interface: `params_per_variable` P, `log_prob`, `sample`, `point_estimate`,
    `check_values`, `blank`, `level_counts`, `reduce_draws`.

    `var` (optional in `log_prob`, `sample`, `point_estimate`) is the variable index of each
    value, shaped like the values; None means they are laid out `[..., D]`, variable j at
    position j. Heads whose variables are all alike ignore it.
    """

    params_per_variable: int

    def log_prob(self, params: torch.Tensor, x: torch.Tensor, var: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, D, P]`, `[B, D]` -> log p(x_j | context) per variable `[B, D]` (float32): a
        log-density for continuous variables, a log-probability for discrete ones."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None, var: torch.Tensor | None = None) -> torch.Tensor:
        """`[N, P]` -> one value per row `[N]`; temperature 0 gives the mode. `var` `[N]`."""
        raise NotImplementedError

    def point_estimate(self, params: torch.Tensor, var: torch.Tensor | None = None) -> torch.Tensor:
        """`[..., D, P]` -> the one-pass imputation of each variable `[..., D]`: the mean of a
        continuous conditional (MSE-optimal), the mode of a discrete one."""
        raise NotImplementedError

    def check_values(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise UserError when x `[..., D]` cannot be values of this head."""
        raise NotImplementedError

    def blank(self, x: torch.Tensor) -> torch.Tensor:
        """The value written where a variable is unobserved, so networks never see it."""
        return torch.zeros_like(x)

    def level_counts(self, dim: int) -> list[int | None]:
        """Number of values of each of `dim` variables (None: continuous)."""
        raise NotImplementedError

    def reduce_draws(self, draws: torch.Tensor) -> torch.Tensor:
        """M draws `[M, ..., D]` -> one fill `[..., D]`: their mean for a continuous variable,
        their most frequent value (the smallest on ties) for a discrete one."""
        levels = self.level_counts(draws.shape[-1])
        discrete = [j for j, k in enumerate(levels) if k is not None]
        if len(discrete) == len(levels):
            return count_levels(draws, max(levels)).argmax(-1).to(draws.dtype)
        out = draws.mean(0)
        if discrete:
            out[..., discrete] = count_levels(draws[..., discrete], max(levels[j] for j in discrete)).argmax(-1).to(out.dtype)
        return out


class CategoricalHead(Head):
    """K-way categorical per variable: params are logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise UserError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.params_per_variable = num_classes

    def log_prob(self, params, x, var=None):
        logp = F.log_softmax(params.float(), dim=-1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def sample(self, params, temperature=1.0, generator=None, var=None):
        return _sample_logits(_finite(params.float()), temperature, generator)

    def point_estimate(self, params, var=None):
        return params.float().argmax(-1)

    def level_counts(self, dim):
        return [self.num_classes] * dim

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
        self.components = check_count(components, "components")
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (min_log_scale, max_log_scale)) or not min_log_scale < 0 < max_log_scale:
            raise UserError(f"min_log_scale and max_log_scale must be finite numbers, min < 0 < max (training "
                            f"starts at a log-scale of 0), got {min_log_scale!r} and {max_log_scale!r}")
        self.params_per_variable = 3 * components
        self.min_log_scale, self.max_log_scale = min_log_scale, max_log_scale

    def mixture(self, params: torch.Tensor):
        """`[..., 3C]` -> log-weights, means, log-scales, each `[..., C]`."""
        logits, means, raw = params.float().split(self.components, dim=-1)
        span = self.max_log_scale - self.min_log_scale
        log_scales = self.min_log_scale + span * torch.sigmoid(raw - math.log(span / -self.min_log_scale - 1))
        return F.log_softmax(logits, -1), means, log_scales

    def log_prob(self, params, x, var=None):
        log_w, means, log_scales = self.mixture(params)
        z = (x.float().unsqueeze(-1) - means) * torch.exp(-log_scales)
        comp = -0.5 * z.square() - log_scales - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_w + comp, dim=-1)

    def sample(self, params, temperature=1.0, generator=None, var=None):
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

    def point_estimate(self, params, var=None):
        return self.mean(params)

    def level_counts(self, dim):
        return [None] * dim

    def check_values(self, x, name="x"):
        if not x.is_floating_point():
            raise UserError(f"{name} must be a floating-point tensor for a continuous head, got {x.dtype}")
        if x.numel() and not torch.isfinite(x).all():
            raise UserError(f"{name} has non-finite values (NaN or inf) where values are required")


class TableHead(Head):
    """A mixed table: numeric column j a mixture of C Gaussians (MixtureOfGaussiansHead's
    parameters in its first 3C params), categorical column j a softmax over its own K_j
    levels (its first K_j params; the logits beyond K_j are masked out). P = max(3C, max K_j).

    `levels[j]` is K_j, or None for a numeric column. Values are floats: numbers, and level
    ids 0..K_j-1 for categorical columns; log_prob is a log-density for numeric columns and
    a log-probability for categorical ones.
    """

    def __init__(self, levels: list[int | None], components: int = 10):
        super().__init__()
        if not levels or any(k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2)
                             for k in levels):
            raise UserError(f"levels must list, per column, None (numeric) or a level count >= 2, got {levels}")
        self.levels = list(levels)
        self.gaussian = MixtureOfGaussiansHead(components)
        self.max_levels = max(k or 0 for k in levels)
        self.params_per_variable = max(self.gaussian.params_per_variable, self.max_levels)
        self.register_buffer("sizes", torch.tensor([k or 0 for k in levels]), persistent=False)

    def _sizes(self, like: torch.Tensor, var: torch.Tensor | None) -> torch.Tensor:
        """K_j (0 for numeric) of each value: `like [..., D]` or `var` shaped like the values."""
        if var is None:
            if like.shape[-1] != len(self.levels):
                raise UserError(f"values have {like.shape[-1]} variables per row, the table has {len(self.levels)}")
            return self.sizes.expand(like.shape)
        return self.sizes[var]

    def _logits(self, params: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """Each categorical column's K_j logits `[..., max K]`, the rest -inf (numeric: all but one)."""
        logits = params[..., :self.max_levels].float()
        beyond = torch.arange(self.max_levels, device=params.device) >= sizes.clamp(min=1).unsqueeze(-1)
        return logits.masked_fill(beyond, -math.inf)

    def _gaussian(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., :self.gaussian.params_per_variable]

    def log_prob(self, params, x, var=None):
        sizes = self._sizes(x, var)
        categorical = sizes > 0
        ids = torch.where(categorical, x, 0).long()
        discrete = F.log_softmax(self._logits(params, sizes), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        continuous = self.gaussian.log_prob(self._gaussian(params), torch.where(categorical, 0.0, x.float()))
        return torch.where(categorical, discrete, continuous)

    def sample(self, params, temperature=1.0, generator=None, var=None):
        if var is None:
            raise UserError("TableHead.sample needs var: the column of each row of params")
        params = _finite(params)
        sizes = self._sizes(params[..., 0], var)
        categorical = sizes > 0
        out = torch.empty(len(params), device=params.device)
        if categorical.any():
            logits = self._logits(params[categorical], sizes[categorical])
            out[categorical] = _sample_logits(logits, temperature, generator).float()
        if not categorical.all():
            out[~categorical] = self.gaussian.sample(self._gaussian(params[~categorical]), temperature, generator)
        return out

    def point_estimate(self, params, var=None):
        sizes = self._sizes(params[..., 0], var)
        mode = self._logits(params, sizes).argmax(-1).float()
        return torch.where(sizes > 0, mode, self.gaussian.mean(self._gaussian(params)))

    def check_values(self, x, name="x"):
        if not x.is_floating_point():
            raise UserError(f"{name} must be a floating-point tensor (level ids as floats), got {x.dtype}")
        if x.numel() and not torch.isfinite(x).all():
            raise UserError(f"{name} has non-finite values (NaN or inf) where values are required")
        sizes = self._sizes(x, None)
        bad = (sizes > 0) & ((x != x.round()) | (x < 0) | (x >= sizes))
        if bad.any():
            where = bad.nonzero()[0].tolist()
            column = where[-1]
            raise UserError(f"{name} column {column} is categorical: values must be level ids "
                            f"0..{self.levels[column] - 1}, got {x[tuple(where)].item():g}")

    def level_counts(self, dim):
        if dim != len(self.levels):
            raise UserError(f"values have {dim} variables per row, the table has {len(self.levels)}")
        return list(self.levels)
