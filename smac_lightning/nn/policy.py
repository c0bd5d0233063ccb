"""The tanh-Gaussian policy pi(a | s, z)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smac_lightning.nn.mlp import init_last_layer, mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
ACTION_CLAMP = 0.999999  # the authors' clamp of dataset actions: exactly +-1 would give atanh = inf


class TanhGaussian:
    """A Gaussian squashed by tanh, with the change-of-variables log-density."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, action_clamp: float = ACTION_CLAMP):
        self.mean, self.log_std = mean, log_std
        self.std = log_std.exp()
        self.action_clamp = action_clamp

    def rsample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-density (summed over action dims, keepdim)."""
        pre_tanh = self.mean + self.std * torch.randn_like(self.mean)
        return torch.tanh(pre_tanh), self._log_prob_pre_tanh(pre_tanh)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """The log-density of (dataset) actions, clamped to +-``action_clamp`` first."""
        return self._log_prob_pre_tanh(torch.atanh(action.clamp(-self.action_clamp, self.action_clamp)))

    def _log_prob_pre_tanh(self, u: torch.Tensor) -> torch.Tensor:
        gaussian = -0.5 * ((u - self.mean) / self.std) ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2), written in a form that stays finite for large |u|
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return (gaussian - log_det).sum(-1, keepdim=True)

    @property
    def deterministic(self) -> torch.Tensor:
        return torch.tanh(self.mean)


class TanhGaussianPolicy(nn.Module):
    """A ReLU trunk with separate mean and log-std heads, initialised as the authors' (+-1e-3);
    ``action_clamp``: where the log-density of an action of +-1 is taken (``TanhGaussian.log_prob``)."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int], action_clamp: float = ACTION_CLAMP):
        super().__init__()
        self.act_dim = act_dim
        self.action_clamp = action_clamp
        *trunk, mean_head = mlp(obs_dim + latent_dim, hidden, act_dim, last_init=1e-3)
        self.trunk = nn.Sequential(*trunk)
        self.mean = mean_head
        self.log_std = nn.Linear(hidden[-1] if hidden else obs_dim + latent_dim, act_dim)
        init_last_layer(self.log_std, 1e-3, bias=None)

    def forward(self, observation: torch.Tensor, z: torch.Tensor) -> TanhGaussian:
        h = self.trunk(torch.cat([observation, z], dim=-1))
        return TanhGaussian(self.mean(h).float(), self.log_std(h).float().clamp(LOG_STD_MIN, LOG_STD_MAX), self.action_clamp)
