"""Plain and ensembled multilayer perceptrons."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def init_last_layer(layer: nn.Module, bound: float, bias: float | None = 0.0) -> None:
    """The authors' output layers: weights uniform in +-``bound``, biases zero (``bias=None``: uniform too).

    Small outputs at the start keep the first Q values, rewards and log-std near zero.
    """
    nn.init.uniform_(layer.weight, -bound, bound)
    if bias is None:
        nn.init.uniform_(layer.bias, -bound, bound)
    else:
        nn.init.constant_(layer.bias, bias)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, last_init: float | None = None) -> nn.Sequential:
    """ReLU MLP; ``last_init`` initialises the output layer as the authors did (see ``init_last_layer``)."""
    layers, last = [], in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    if last_init is not None:
        init_last_layer(layers[-1], last_init)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers applied as one batched matmul: ``[n, *, in] -> [n, *, out]``."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, member by member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return torch.baddbmm(self.bias, flat, self.weight).reshape(*x.shape[:-1], -1)


class EnsembleMLP(nn.Module):
    """``n`` MLPs evaluated together on a shared input: ``[*, in] -> [n, *, out]``."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], out_dim: int, last_init: float | None = None):
        super().__init__()
        self.n = n
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        if last_init is not None:
            init_last_layer(self.layers[-1], last_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(self.n, *x.shape)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
