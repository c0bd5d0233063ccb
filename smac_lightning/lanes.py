"""A TorchRL env that steps several single-task gymnasium envs of one family in lock-step.

TorchRL's per-step work (TensorDict building, spec checks, the collector's bookkeeping) costs
more than a cheap physics step; over ``n`` lanes it is paid once per batched step, and the
policy runs one batched forward for all lanes.
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase


class TaskLanes(EnvBase):
    """``len(envs)`` lanes (batch size ``[n]``), each a gymnasium env whose task can be switched.

    ``assign(tasks, seeds)`` sets each lane's task and the seeds of the next full reset, so a
    collection is reproducible from its seeds alone (and resumes exactly). Lanes that end an
    episode are reset on their own, as TorchRL's ``_reset`` mask asks.
    """

    def __init__(self, envs: Sequence[gym.Env]):
        super().__init__(batch_size=torch.Size([len(envs)]))
        self.envs = list(envs)
        n = len(self.envs)
        obs_dim, act_dim = self.envs[0].observation_space.shape[0], self.envs[0].action_space.shape[0]
        self.observation_spec = Composite(observation=Unbounded((n, obs_dim)), shape=(n,))
        self.action_spec = Bounded(-1.0, 1.0, (n, act_dim))
        self.reward_spec = Unbounded((n, 1))
        flag = Categorical(2, (n, 1), dtype=torch.bool)
        self.full_done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,))
        self._observation = np.zeros((n, obs_dim), np.float32)
        self._seeds: list[int] | None = None

    def assign(self, tasks: np.ndarray, seeds: Sequence[int]) -> None:
        for env, task in zip(self.envs, tasks):
            env.set_task(task)
        self._seeds = [int(s) for s in seeds]

    def _flags(self, terminated: np.ndarray, truncated: np.ndarray) -> dict:
        t, u = torch.from_numpy(terminated).view(-1, 1), torch.from_numpy(truncated).view(-1, 1)
        return {"terminated": t, "truncated": u, "done": t | u}

    def _reset(self, tensordict: TensorDict | None = None, **kwargs) -> TensorDict:
        mask = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict["_reset"].reshape(-1).numpy()
        seeds, self._seeds = self._seeds, None  # assigned seeds serve one full reset
        for i, env in enumerate(self.envs):
            if mask is None or mask[i]:
                self._observation[i] = env.reset(seed=None if seeds is None else seeds[i])[0]
        n = len(self.envs)
        none = np.zeros(n, bool)
        return TensorDict({"observation": torch.from_numpy(self._observation.copy()), **self._flags(none, none)}, batch_size=self.batch_size)

    def _step(self, tensordict: TensorDict) -> TensorDict:
        action = tensordict["action"].detach().cpu().numpy()
        n = len(self.envs)
        reward, terminated, truncated = np.zeros((n, 1), np.float32), np.zeros(n, bool), np.zeros(n, bool)
        for i, env in enumerate(self.envs):
            self._observation[i], reward[i, 0], terminated[i], truncated[i], _ = env.step(action[i])
        return TensorDict(
            {"observation": torch.from_numpy(self._observation.copy()), "reward": torch.from_numpy(reward), **self._flags(terminated, truncated)},
            batch_size=self.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        """Seeds come per collection through ``assign``."""

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self.envs:
            env.close()
        super().close(raise_if_closed=raise_if_closed)
