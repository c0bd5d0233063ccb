"""The reward decoder r(s, a, z)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from smac_lightning.nn.mlp import mlp


class RewardDecoder(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = mlp(obs_dim + act_dim + latent_dim, hidden, 1, last_init=3e-3)  # the authors' output layer

    def forward(self, observation: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([observation, action, z], dim=-1)).float()
