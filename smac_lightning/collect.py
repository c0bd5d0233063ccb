"""Reward-free collection through a TorchRL collector, and reward labelling by the decoder."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector

from smac_lightning.envs.base import TaskFamily
from smac_lightning.evaluation import prior, sample
from smac_lightning.lanes import TaskLanes
from smac_lightning.nn import RewardDecoder, TanhGaussianPolicy
from smac_lightning.rollout import rollout


class LatentExplorer(nn.Module):
    """The stochastic policy conditioned on z ~ N(``mean``, ``var``) (one row per lane), z drawn
    afresh at every step (``per_step``, the authors' collection) or fixed by ``set_latent``."""

    def __init__(self, policy: TanhGaussianPolicy, latent_dim: int, per_step: bool = True):
        super().__init__()
        self.policy = policy
        self.latent_dim = latent_dim
        self.per_step = per_step
        self.mean = self.var = self.z = torch.zeros(1, latent_dim)

    def set_latent(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.mean, self.var = mean, var
        self.z = sample(mean, var)

    @torch.no_grad()
    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = sample(self.mean, self.var) if self.per_step else self.z
        return self.policy(observation, z.to(observation.device).expand(*observation.shape[:-1], self.latent_dim)).rsample()[0]


class ExplorationCollector:
    """Trajectories on chosen training tasks with chosen z distributions, many at once.

    A TorchRL ``Collector`` over ``TaskLanes``: each call steps one lane per requested
    trajectory in lock-step, with one batched policy forward per step. Collectors are built
    per lane count on first use and kept. By default envs are built with ``reward_free=True``:
    their true reward is never computed, so nothing in the self-supervised phase can read it.
    With ``reward_free=False`` (the Online Oracle) the trajectories carry the env's rewards.
    """

    def __init__(
        self,
        family: TaskFamily,
        tasks: np.ndarray,
        policy: TanhGaussianPolicy,
        latent_dim: int,
        per_step: bool = True,
        reward_free: bool = True,
    ):
        self.family = family
        self.tasks = tasks
        self.reward_free = reward_free
        self.explorer = LatentExplorer(policy, latent_dim, per_step)
        self._lanes: dict[int, tuple[TaskLanes, Collector]] = {}

    def _collector(self, n: int) -> tuple[TaskLanes, Collector]:
        if n not in self._lanes:
            with torch.random.fork_rng():  # built on first use: it must not shift the global stream (exact resume)
                self._lanes[n] = self._build(n)
        return self._lanes[n]

    def _build(self, n: int) -> tuple[TaskLanes, Collector]:
        lanes = TaskLanes([self.family.make_env(self.tasks[0], reward_free=self.reward_free) for _ in range(n)])
        collector = Collector(
            lanes,
            TensorDictModule(self.explorer, in_keys=["observation"], out_keys=["action"]),
            frames_per_batch=n * self.family.horizon,
            total_frames=-1,
            reset_at_each_iter=True,  # each batch is one episode per lane, begun after ``assign``
            auto_register_policy_transforms=False,
        )
        return lanes, collector

    def trajectories(self, task_ids: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, seed: int) -> TensorDict:
        """``[len(task_ids), horizon]`` transitions, one trajectory per entry, in the dataset's layout.

        Lane ``i`` runs task ``task_ids[i]`` with z ~ N(``mean[i]``, ``var[i]``) (p(z): zeros and
        ones). A lane whose episode ends early starts another, as a single env would.
        """
        n = len(task_ids)
        self.explorer.set_latent(mean, var)  # before a collector is built: building runs the policy on n lanes
        lanes, collector = self._collector(n)
        lanes.assign(self.tasks[task_ids.numpy()], [seed + i for i in range(n)])
        batch = collector.next()
        return TensorDict(
            {
                "observation": batch["observation"],
                "action": batch["action"],
                "terminated": batch["next", "terminated"],
                "truncated": batch["next", "truncated"],
                "next": {"observation": batch["next", "observation"]},
                "task": task_ids.view(n, 1, 1).expand(*batch.batch_size, 1).clone(),
                **({} if self.reward_free else {"reward": batch["next", "reward"].float()}),
            },
            batch_size=batch.batch_size,
        )

    def shutdown(self) -> None:
        for lanes, collector in self._lanes.values():
            collector.shutdown()
            lanes.close(raise_if_closed=False)
        self._lanes.clear()


@torch.no_grad()
def label_rewards(decoder: RewardDecoder, trajectories: TensorDict, z: torch.Tensor) -> torch.Tensor:
    """Eq. (4): r = r_d(s, a, z) for every row of ``[n, T]`` ``trajectories``, with one z per trajectory (``[n, d_z]``)."""
    z_rows = z.unsqueeze(1).expand(*trajectories.batch_size, z.shape[-1])
    return decoder(trajectories["observation"], trajectories["action"], z_rows)


class TaskRollouts:
    """Whole episodes with true rewards on chosen tasks in lock-step, one batched policy call per step.

    PEARL's collection: one env per task, built once; ``z`` is one row per episode.
    """

    def __init__(self, family: TaskFamily, tasks: np.ndarray):
        self.family = family
        self.envs = [family.make_env(task) for task in tasks]

    @torch.no_grad()
    def episodes(self, task_ids: list[int], policy: TanhGaussianPolicy, z: torch.Tensor, seed: int) -> list[TensorDict]:
        """One stochastic episode per entry of ``task_ids``; each task's valid transitions, in time order."""
        def act(observation: np.ndarray) -> np.ndarray:
            return policy(torch.as_tensor(observation, dtype=z.dtype, device=z.device), z).rsample()[0].cpu().numpy()

        batch = rollout([self.envs[i] for i in task_ids], act, self.family.horizon, seed=seed)
        rows = []
        for k, task in enumerate(task_ids):
            valid = batch[k][batch["valid"][k]].exclude("valid")
            valid["task"] = torch.full((valid.batch_size[0], 1), task, dtype=torch.long)
            valid["generated"] = torch.zeros(valid.batch_size[0], 1, dtype=torch.bool)  # true rewards
            rows.append(valid)
        return rows


class PriorBehaviour:
    """The z-conditioned policy with z ~ p(z) per episode, in the behaviour-policy interface of ``data.generate``."""

    def __init__(self, policy: TanhGaussianPolicy, latent_dim: int):
        self.policy, self.latent_dim = policy, latent_dim
        self.z = torch.zeros(0, latent_dim)

    def reset(self, tasks: np.ndarray) -> None:
        self.z = torch.randn(len(tasks), self.latent_dim, device=next(self.policy.parameters()).device)

    @torch.no_grad()
    def act(self, observation: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.z.device)
        return self.policy(obs, self.z).rsample()[0].cpu().numpy()
