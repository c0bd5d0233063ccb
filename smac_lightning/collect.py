"""Reward-free exploration with z ~ p(z) through a TorchRL collector, and reward labelling."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import GymWrapper

from smac_lightning.envs.base import TaskFamily
from smac_lightning.nn import ContextEncoder, RewardDecoder, TanhGaussianPolicy


class PriorExplorer(nn.Module):
    """The stochastic policy with a fresh z ~ N(0, I) at every step (the authors' exploration)."""

    def __init__(self, policy: TanhGaussianPolicy, latent_dim: int):
        super().__init__()
        self.policy = policy
        self.latent_dim = latent_dim

    @torch.no_grad()
    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = torch.randn(*observation.shape[:-1], self.latent_dim, device=observation.device)
        return self.policy(observation, z).rsample()[0]


class ExplorationCollector:
    """One reward-free trajectory at a time on a chosen training task.

    The env is built with ``reward_free=True``: its true reward is never
    computed, so nothing in the self-supervised phase can read it.
    """

    def __init__(self, family: TaskFamily, tasks: np.ndarray, policy: TanhGaussianPolicy, latent_dim: int):
        self.tasks = tasks
        self.env = family.make_env(tasks[0], reward_free=True)
        self.collector = Collector(
            GymWrapper(self.env),
            TensorDictModule(PriorExplorer(policy, latent_dim), in_keys=["observation"], out_keys=["action"]),
            frames_per_batch=family.horizon,
            total_frames=-1,
            reset_at_each_iter=True,  # each batch is one episode, begun after the task switch below
            auto_register_policy_transforms=False,
        )
        self._batches = iter(self.collector)

    def trajectory(self, task: int) -> TensorDict:
        """``horizon`` transitions on training task ``task``, in the dataset's layout, without rewards."""
        self.env.set_task(self.tasks[task])
        batch = next(self._batches)
        n = batch.batch_size[0]
        return TensorDict(
            {
                "observation": batch["observation"],
                "action": batch["action"],
                "terminated": batch["next", "terminated"],
                "truncated": batch["next", "truncated"],
                "next": {"observation": batch["next", "observation"]},
                "task": torch.full((n, 1), task, dtype=torch.long),
            },
            batch_size=[n],
        )

    def shutdown(self) -> None:
        self.collector.shutdown()


@torch.no_grad()
def label_rewards(
    encoder: ContextEncoder, decoder: RewardDecoder, trajectories: TensorDict, offline_context: TensorDict
) -> torch.Tensor:
    """Eq. (4): r = r_d(s, a, z) with one z ~ q(z | h_offline) per trajectory.

    ``trajectories`` is ``[k, horizon]`` and ``offline_context`` ``[k, n]``, row i
    holding an offline history of the task trajectory i is filed under.
    """
    mean, var = encoder.posterior(offline_context)
    z = mean + var.sqrt() * torch.randn_like(mean)
    z_rows = z.unsqueeze(1).expand(*trajectories.batch_size, z.shape[-1])
    return decoder(trajectories["observation"], trajectories["action"], z_rows)
