"""The context encoder q(z | h): per-transition Gaussian factors multiplied into one posterior."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smac_lightning.nn.mlp import mlp


MIN_VARIANCE = 1e-7


def product_of_gaussians(
    mean: torch.Tensor, var: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply the Gaussian factors along dim -2: precisions add, means are precision-weighted.

    ``mask`` (``[..., n]``, bool) drops factors, e.g. the padding after an episode ended early.
    """
    precision = 1.0 / var.clamp_min(MIN_VARIANCE)
    if mask is not None:
        precision = precision * mask.unsqueeze(-1).to(precision.dtype)
    post_var = 1.0 / precision.sum(-2)
    return post_var * (mean * precision).sum(-2), post_var


class ContextEncoder(nn.Module):
    """Maps a history ``[tasks, n, transition_dim]`` to the posterior's mean and variance ``[tasks, d_z]``.

    A transition is ``(s, a, r)``, as the authors' examples encode it.
    """

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(obs_dim + act_dim + 1, hidden, 2 * latent_dim, last_init=3e-3)  # the authors' output layer

    def forward(self, observation, action, reward, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(torch.cat([observation, action, reward], dim=-1)).float()
        mean, pre_var = out.split(self.latent_dim, dim=-1)
        return product_of_gaussians(mean, F.softplus(pre_var), mask)

    def posterior(self, context) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | h) for a ``[tasks, n]`` TensorDict of transitions (``valid`` masks padding if present)."""
        return self(context["observation"], context["action"], context["reward"], context.get("valid", None))
