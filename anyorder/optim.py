"""Optimiser policy: weight decay on the matrices that multiply activations, nothing else.

Decaying a norm's gain or a bias pulls it towards an arbitrary value (zero), and decaying
an embedding or a position table shrinks rarely seen rows the most; a matrix of a linear
or convolutional layer is what decay is meant to regularise (nanoGPT's policy).
"""

from __future__ import annotations

import torch
from torch import nn

MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: the `weight` of every Linear/Conv layer with `weight_decay`,
    every other parameter (norms, biases, embeddings, position tables) with none."""
    decay = {id(module.weight) for module in model.modules()
             if isinstance(module, MATRIX_LAYERS) and isinstance(module.weight, nn.Parameter)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0}]


def optimizer_for(model: nn.Module, optim) -> torch.optim.AdamW:
    """The run's AdamW over `parameter_groups`, from an optim config (lr, betas, weight_decay);
    the trainer and the benchmarks build it here so that both step the same optimiser."""
    return torch.optim.AdamW(parameter_groups(model, optim.weight_decay), lr=optim.lr, betas=tuple(optim.betas))
