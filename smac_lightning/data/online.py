"""The DataModule of an online learner (PEARL): empty replays that collection fills."""

from __future__ import annotations

import torch

from smac_lightning.data.datamodule import MetaDataModule
from smac_lightning.data.replay import MultiTaskReplay
from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError


class OnlineMetaDataModule(MetaDataModule):
    def __init__(
        self,
        family: TaskFamily,
        meta_batch: int = 16,
        batch_size: int = 256,
        context_size: int = 100,
        rl_capacity: int = 10_000,
        encoder_capacity: int = 2_000,
        seed: int | None = None,
        env_processes: int = 1,
    ):
        """
        Args:
            family: the task family; its fixed seeded train/test task sets are the ones SMAC's datasets use.
            meta_batch: tasks per meta-batch.
            batch_size: RL transitions per task in a meta-batch.
            context_size: encoder (context) transitions per task in a meta-batch.
            rl_capacity: transitions kept per task in the RL replay (a ring: the oldest go first).
            encoder_capacity: transitions kept per task in the encoder replay (at least one collection's worth).
            seed: seed of meta-batch sampling (offset by the process rank under DDP); by default the
                run's ``seed_everything``.
            env_processes: worker processes that step the envs of collection and meta-test (a TorchRL
                ``ParallelEnv``, each stepping an equal share of the lanes); 1 steps them in this process.
        """
        super().__init__(family, meta_batch, batch_size, context_size, seed, env_processes)
        if min(rl_capacity, encoder_capacity) < 1:
            raise ConfigError(f"data.rl_capacity and data.encoder_capacity must be >= 1, got {rl_capacity} and {encoder_capacity}")
        self._train_tasks, self._test_tasks = (torch.as_tensor(t, dtype=torch.float32) for t in family.task_sets())
        env = family.make_env(family.task_sets()[0][0])
        self.obs_dim, self.act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        self.rl = MultiTaskReplay.empty(self.num_train_tasks, rl_capacity, self.obs_dim, self.act_dim)
        self.encoder = MultiTaskReplay.empty(self.num_train_tasks, encoder_capacity, self.obs_dim, self.act_dim)

    @property
    def train_tasks(self) -> torch.Tensor:
        return self._train_tasks

    @property
    def test_tasks(self) -> torch.Tensor:
        return self._test_tasks
