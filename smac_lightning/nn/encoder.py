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

    A transition is ``(s, a, r)``, or ``(s, a, r, s')`` with ``use_next_obs``.
    """

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int], use_next_obs: bool = False):
        super().__init__()
        self.use_next_obs = use_next_obs
        self.latent_dim = latent_dim
        in_dim = obs_dim * (2 if use_next_obs else 1) + act_dim + 1
        self.net = mlp(in_dim, hidden, 2 * latent_dim, last_init=3e-3)  # the authors' output layer

    def transitions(self, observation, action, reward, next_observation) -> torch.Tensor:
        parts = [observation, action, reward] + ([next_observation] if self.use_next_obs else [])
        return torch.cat(parts, dim=-1)

    def forward(self, observation, action, reward, next_observation, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.transitions(observation, action, reward, next_observation)).float()
        mean, pre_var = out.split(self.latent_dim, dim=-1)
        return product_of_gaussians(mean, F.softplus(pre_var), mask)

    def posterior(self, context) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | h) for a ``[tasks, n]`` TensorDict of transitions (``valid`` masks padding if present)."""
        return self(
            context["observation"], context["action"], context["reward"], context["next", "observation"],
            context.get("valid", None),
        )
