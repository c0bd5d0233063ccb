"""Twin Q-functions Q(s, a, z) as one batched ensemble."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from smac_lightning.nn.mlp import EnsembleMLP


class CriticEnsemble(nn.Module):
    """``num_critics`` Q-networks in one forward: ``[*, ...] -> [num_critics, *, 1]``."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: Sequence[int], num_critics: int = 2):
        super().__init__()
        self.net = EnsembleMLP(num_critics, obs_dim + act_dim + latent_dim, hidden, 1, last_init=3e-3)  # the authors' output layer

    def forward(self, observation: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # float32 out even under bf16 autocast: Bellman targets and errors need the precision
        return self.net(torch.cat([observation, action, z], dim=-1)).float()
