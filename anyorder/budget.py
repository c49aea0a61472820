"""Step budgets: sample (and score) a path in K network passes instead of one pass per variable.

A **policy** is a list of step boundaries 0 = b_0 < b_1 < … < b_K = m along a path of m
variables u_1..u_m (in protocol order, after the evidence o). Step k draws u_{b_{k-1}+1..b_k}
at once, independently, from the one node o ∪ u_{≤b_{k-1}}; the model's K-step sampler and
its exact likelihood follow it (`AnyOrderModel.sample / log_prob(..., steps=, policy=)`).

This module builds policies — evenly spaced, or the cheapest for a budget by ARDM's dynamic
program over step costs measured on validation rows — rescales one to paths of other
lengths, and keeps fitted policies in a run directory. A policy is a 1-D int64 tensor
`[K+1]`; it imports nothing of ours but the lattice.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from . import lattice
from .errors import Notice, UserError
from .files import write_atomic
from .paths import output_file

POLICIES, STEP_LOSSES = "policies.json", "step_losses.pt"
COSTS = ("exact", "ardm")
FORMAT = "anyorder-policies-1"


def check_policy(policy, name: str = "policy") -> torch.Tensor:
    """A sequence of boundaries -> int64 `[K+1]`: starts at 0, strictly increasing, K >= 1."""
    try:
        policy = torch.as_tensor(policy)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{name} must be a list of step boundaries like [0, 2, 4, 5], got {policy!r}") from None
    if policy.dim() != 1 or len(policy) < 2 or policy.is_floating_point() or policy.dtype == torch.bool:
        raise UserError(f"{name} must be a 1-D list of at least two integer step boundaries "
                         f"(0 = b_0 < … < b_K), got {policy.tolist()}")
    policy = policy.long().cpu()
    if policy[0] != 0 or not (policy.diff() > 0).all():
        raise UserError(f"{name} must start at 0 and increase strictly, got {policy.tolist()}")
    return policy


def even_policy(length: int, steps: int) -> torch.Tensor:
    """K evenly spaced steps over a path of `length` variables: b_k = round(k·m/K), `[K+1]`."""
    if not 1 <= steps <= length:
        raise UserError(f"steps must lie in 1..{length} for a path of {length} variables, got {steps}")
    return row_boundaries(torch.arange(steps + 1), torch.tensor([length]))[0]


def row_boundaries(policy: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A policy for a path of length L = policy[-1], rescaled to each row's path length m `[B]`.

    Returns non-decreasing boundaries `[B, K+1]` with b_0 = 0 and b_K = m. Where m >= K each
    step takes at least one variable: b_k = round(b_k·m/L), then pushed apart by the least
    amount (b_k - k is made non-decreasing and at most m - K). Where m < K the row draws one
    variable per step and its last K - m steps are empty (no pass). A policy of length m is
    returned unchanged for rows of length m.
    """
    policy = policy.to(lengths.device)
    steps, full = len(policy) - 1, policy[-1]
    m = lengths.long().unsqueeze(-1)
    k = torch.arange(steps + 1, device=lengths.device)
    raw = (2 * policy * m + full) // (2 * full)                    # round(b·m/L), ties up
    spread = torch.minimum((raw - k).cummax(-1).values, m - steps) + k
    return torch.where(m >= steps, spread, torch.minimum(k, m))


# ---------------------------------------------------------------- step costs
@torch.no_grad()
def step_losses(model, rows: torch.Tensor, batch_size: int = 64, generator=None, autocast=None,
                progress: bool = False, given: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
    """L[t, j] = mean over `rows [N, D]` of -log p(x_{u_j} | x_o, x_{u_<t}), nats, `[m, m]` float64.

    u is the model's path (protocol order) from node o = `given` `[N, D]` bool (default: the
    empty node, so u is the joint path and m = D), over the m variables outside o; every
    row needs the same m. t is the number of path places already drawn and j >= t a later
    place (L is upper-triangular; NaN below the diagonal). One pass at node o ∪ u_<t gives
    the loss of every later variable, so m passes per row measure the exact expected cost of
    every parallel step (`step_costs`). steps: measure along the order a K-step walk takes
    (`walk_order`; natural-strided walks step budgets in another order than its exact path).
    """
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or len(rows) == 0:
        raise UserError("rows must be a non-empty tensor [N, D] of validation rows")
    if rows.is_floating_point() and torch.isnan(rows).any():
        raise UserError("rows have missing (NaN) cells; step losses need complete rows")
    given = torch.zeros_like(rows, dtype=torch.bool) if given is None else given
    if given.shape != rows.shape or given.dtype != torch.bool:
        raise UserError(f"given must be a bool mask shaped like rows {tuple(rows.shape)}")
    sizes = given.sum(-1)
    if (sizes != sizes[0]).any() or sizes[0] == rows.shape[1]:
        raise UserError("every row of given must observe the same number of variables, fewer than D")
    n, dim = rows.shape
    m = dim - int(sizes[0])
    device = model.device
    total = torch.zeros(m, m, dtype=torch.float64, device=device)
    batches = range(0, n, batch_size)
    for start in tqdm(batches, desc="step losses (batches)", disable=not progress, dynamic_ncols=True):
        x = rows[start:start + batch_size].to(device)
        if not x.is_floating_point():
            x = x.long()
        node = given[start:start + batch_size].to(device)
        order = walk_order(model.protocol, m, steps)
        bounds = row_boundaries(torch.arange(order + 1 if order else m + 1), (~node).sum(-1))
        rank = lattice.walk_ranks(node, ~node, model.protocol, bounds, generator)
        with autocast or torch.autocast(device.type, enabled=False):
            total += model.walk.step_losses(model, x, node, rank).sum(0)
    later = torch.ones(m, m, dtype=torch.bool, device=device).triu()
    return torch.where(later, total / n, math.nan).cpu()


def walk_order(protocol: str, length: int, steps: int | None) -> int | None:
    """Which order a K-step walk over `length` targets takes under `protocol`, as a key: None
    for the protocol's own (the exact path's), K where it walks strided(K) instead
    (natural-strided with a step of several targets: `lattice.walk_ranks`). Policies for
    budgets of one key share one measurement of step losses."""
    if steps is None or steps >= length or lattice.trains_exact_stream(protocol):
        return None
    return int(steps)


def step_costs(losses: torch.Tensor, kind: str = "exact") -> torch.Tensor:
    """C[t, t'] = expected nats of drawing places t..t'-1 in one step from the node of size t.

    `losses` `[m, m]` from `step_losses`; returns `[m+1, m+1]` float64, +inf where t >= t'.
    exact: Σ_{j=t}^{t'-1} L[t, j], the true expected cost of that step. ardm: (t' - t)·L[t, t],
    ARDM's approximation (k times the loss of the path's next variable at step t).
    """
    if kind not in COSTS:
        raise UserError(f"unknown cost {kind!r}; expected one of {', '.join(COSTS)}")
    m = len(losses)
    losses = losses.double().nan_to_num(0.0).triu()
    cost = torch.full((m + 1, m + 1), math.inf, dtype=torch.float64)
    t, t2 = torch.triu_indices(m + 1, m + 1, offset=1)
    if kind == "exact":
        prefix = torch.cat([torch.zeros(m, 1, dtype=torch.float64), losses.cumsum(-1)], -1)  # [m, m+1]
        cost[t, t2] = prefix[t, t2] - prefix[t, t]
    else:
        cost[t, t2] = (t2 - t) * losses.diagonal()[t]
    return cost


def optimal_policies(costs: torch.Tensor, budgets) -> dict[int, tuple[torch.Tensor, float]]:
    """ARDM's dynamic program: for each budget K, the policy minimising Σ_k C[b_{k-1}, b_k].

    costs `[m+1, m+1]` (+inf where t >= t'). V_k(t') = min_t V_{k-1}(t) + C[t, t'] runs as one
    `[m+1, m+1]` min per k, O(K·m²) in tensor ops; one pass up to the largest budget serves
    every smaller one. Returns {K: (policy [K+1], expected cost in nats)}.
    """
    m = len(costs) - 1
    budgets = sorted({int(k) for k in budgets})
    if not budgets or budgets[0] < 1 or budgets[-1] > m:
        raise UserError(f"budgets must lie in 1..{m} for a path of {m} variables, got {budgets}")
    value = torch.full((m + 1,), math.inf, dtype=torch.float64)
    value[0] = 0.0
    best, total = [], []
    for _ in range(budgets[-1]):
        value, previous = (value.unsqueeze(-1) + costs).min(0)   # previous[t']: the boundary before t'
        best.append(previous)
        total.append(value[m].item())
    result = {}
    for steps in budgets:
        bounds = [m]
        for k in range(steps, 0, -1):
            bounds.append(int(best[k - 1][bounds[-1]]))
        result[steps] = (torch.tensor(bounds[::-1]), total[steps - 1])
    return result


def policy_cost(costs: torch.Tensor, policy: torch.Tensor) -> float:
    """Σ_k C[b_{k-1}, b_k]: a policy's expected nats under a step-cost matrix `[m+1, m+1]`."""
    return costs[policy[:-1], policy[1:]].sum().item()


# ---------------------------------------------------------------- run directory
def fit_policies(model, rows: torch.Tensor, budgets, run_dir: str | Path, cost: str = "exact",
                 split: str = "valid", remeasure: bool = False, batch_size: int = 64, generator=None,
                 autocast=None, progress: bool = False):
    """Fit the cheapest policy for each budget on `rows` and store them in `run_dir`.

    Step losses are measured once per walk order (`walk_order`: one for most protocols; D
    passes per row), those of the protocol's own order kept in `run_dir/step_losses.pt`; a
    later fit of the same weights on the same split and row count reuses them unless `remeasure`.
    Returns ({K: (policy, expected nats)}, the losses `[D, D]` along the protocol's own order
    (measured too where no budget walks it), path of policies.json).
    """
    for name in (STEP_LOSSES, POLICIES):      # refused now, not after D passes over every row
        output_file(Path(run_dir) / name, "the run directory's " + name)
    info = {"protocol": model.protocol, "cost": cost, "split": split, "rows": len(rows),
            "length": rows.shape[1], "weights": fingerprint(model)}
    measured = Path(run_dir) / STEP_LOSSES
    same = ("protocol", "split", "rows", "length", "weights", "order")
    groups = {}
    for steps in budgets:                     # budgets walking one order share one measurement
        groups.setdefault(walk_order(model.protocol, rows.shape[1], int(steps)), []).append(steps)
    own = groups.pop(None, [])                # the protocol's own order last: the losses returned and kept
    stored = read_step_losses(measured, rows.shape[1]) if measured.exists() and not remeasure else {}
    fitted = {}
    for order, group in [*groups.items(), (None, own)]:
        key = {**info, "order": order}
        if all(stored.get(k) == key[k] for k in same):
            losses = stored["losses"]
        else:
            losses = step_losses(model, rows, batch_size, generator, autocast, progress, steps=order)
            if order is None:                 # only the protocol's own order is kept (see above)
                _write(measured, lambda f: torch.save({"losses": losses, **{k: key[k] for k in same}}, f))
        if group:
            fitted.update(optimal_policies(step_costs(losses, cost), group))
    return fitted, losses, save_policies(run_dir, fitted, info)


def read_step_losses(path: Path, length: int) -> dict:
    """The stored step-loss cache, or {} (with a Notice) when the file is not one: damaged,
    foreign, of another shape, or holding anything but plain tensors and values (torch's
    `weights_only` loader refuses code). The caller measures again and overwrites it."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        losses = stored["losses"]
        valid = (isinstance(losses, torch.Tensor) and losses.dtype == torch.float64
                 and losses.shape == (length, length) and not losses.triu().isinf().any()
                 and not losses.triu().isnan().any())
    except Exception:  # torch raises many types for damaged or hostile pickles and zips
        valid = False
    if not valid:
        warnings.warn(Notice(f"{path} is not a valid step-loss cache; measuring the step losses again"),
                      stacklevel=3)
        return {}
    return stored


def _write(path: Path, write) -> None:
    """`files.write_atomic`, its OSError (a full disk, a read-only folder) as a one-line UserError."""
    try:
        write_atomic(path, write)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}; nothing was changed there") from None


def fingerprint(model) -> str:
    """A digest of the model's weights and protocol: stored losses and policies belong to it."""
    digest = hashlib.sha1(str(model.protocol).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_policies(run_dir: str | Path, fitted: dict[int, tuple[torch.Tensor, float]], info: dict) -> Path:
    """Merge fitted policies {K: (policy, expected nats)} into `run_dir/policies.json` (atomic).

    `info` (protocol, cost kind, split, rows, length) is stored with each policy."""
    path = Path(run_dir) / POLICIES
    entries = read_policies(run_dir)
    for steps, (policy, cost) in fitted.items():
        entries[str(steps)] = {**info, "boundaries": policy.tolist(), "expected_nats": cost}
    text = json.dumps({"format": FORMAT, "policies": entries}, indent=1).encode()
    _write(path, lambda f: f.write(text))
    return path


def read_policies(run_dir: str | Path) -> dict[str, dict]:
    """The fitted policies stored in a run directory, {"K": entry}; empty when none were fitted."""
    path = Path(run_dir) / POLICIES
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
        if stored.get("format") != FORMAT:
            raise ValueError
        return dict(stored["policies"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is not a policies file written by anyorder; delete it and rerun "
                         "`anyorder fit-policy`") from None


def load_policy(run_dir: str | Path, steps: int, model) -> torch.Tensor | None:
    """The policy fitted for budget `steps` in `run_dir` (None if there is none); an error if
    it was fitted for other weights (the run trained on since) or another protocol."""
    entry = read_policies(run_dir).get(str(steps))
    if entry is None:
        return None
    if entry.get("protocol") != model.protocol or entry.get("weights") != fingerprint(model):
        raise UserError(f"the policy for {steps} steps in {run_dir} was fitted for other weights or "
                         f"another protocol than this model's; rerun `anyorder fit-policy {run_dir} "
                         f"--steps {steps} --remeasure`")
    return check_policy(entry["boundaries"], f"stored policy for {steps} steps")
