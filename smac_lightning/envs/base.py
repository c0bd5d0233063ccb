"""The task-family contract every environment family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

from smac_lightning.errors import ConfigError


class TaskFamily(ABC):
    """A distribution over tasks, fixed seeded train/test task sets, and envs for one task.

    Tasks are rows of a float array (``task_dim`` columns); a family knows how to
    draw them, how to build a gymnasium env for one of them, and which scripted
    behaviour policy generates its offline data.
    """

    name: str = "task-family"
    # The offline data's RL and encoder buffers are one buffer (Sawyer, as in the paper).
    one_buffer: bool = False
    # Sparse-reward families: an episode succeeds when a step's reward reaches this (meta-test
    # then also reports success rates).
    success_reward: float | None = None

    def __init__(self, num_train_tasks: int, num_test_tasks: int, horizon: int, seed: int):
        if num_train_tasks < 1 or num_test_tasks < 1:
            raise ConfigError(
                f"{type(self).__name__}: num_train_tasks and num_test_tasks must be >= 1, "
                f"got {num_train_tasks} and {num_test_tasks}"
            )
        if horizon < 1:
            raise ConfigError(f"{type(self).__name__}: horizon must be >= 1, got {horizon}")
        self.num_train_tasks = num_train_tasks
        self.num_test_tasks = num_test_tasks
        self.horizon = horizon
        self.seed = seed

    @abstractmethod
    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        """``n`` tasks drawn from the family's distribution, reproducible from ``seed``."""

    @abstractmethod
    def make_env(self, task: np.ndarray, reward_free: bool = False) -> gym.Env:
        """A gymnasium env for ``task``; ``reward_free`` envs never compute the true reward."""

    @abstractmethod
    def behaviour_policy(self, rng: np.random.Generator):
        """The scripted policy that generates offline data (see ``data.generate``)."""

    @property
    def data_horizon(self) -> int:
        """Steps per trajectory of the scripted offline data (the evaluation horizon unless a family says otherwise)."""
        return self.horizon

    def make_data_env(self, task: np.ndarray) -> gym.Env:
        """The env the scripted offline data is collected in (``data_horizon`` steps per episode)."""
        return self.make_env(task)

    def positions(self, observation: np.ndarray) -> np.ndarray | None:
        """The agent's x-y position in ``observation`` (``[..., 2]``) where the family has one in view, for
        trajectory pictures; None elsewhere."""
        return None

    def data_tag(self) -> str:
        """The family options that change its scripted data but not its tasks, as a dataset folder-name
        suffix ('' where there are none), so data of other options never meets the config."""
        return ""

    def describe_data(self, buffers: dict) -> dict:
        """Family-specific facts about freshly generated buffers, stored in the manifest."""
        return {}

    # Names of the kinds of task whose success meta-test also reports apart (``task_groups``).
    task_group_names: tuple[str, ...] = ()

    def task_groups(self, tasks: np.ndarray) -> dict[str, np.ndarray]:
        """A boolean mask over ``tasks`` per name of ``task_group_names``."""
        return {}

    def task_sets(self) -> tuple[np.ndarray, np.ndarray]:
        """Fixed train and held-out test tasks: one seeded draw, first train then test."""
        tasks = self.sample_tasks(self.num_train_tasks + self.num_test_tasks, self.seed)
        return tasks[: self.num_train_tasks], tasks[self.num_train_tasks :]

    def config(self) -> dict:
        """What identifies the family's data; stored in dataset manifests."""
        return {
            "name": self.name,
            "num_train_tasks": self.num_train_tasks,
            "num_test_tasks": self.num_test_tasks,
            "horizon": self.horizon,
            "seed": self.seed,
        }


class UniformRandomBehaviour:
    """Uniform random actions: a stand-in behaviour policy until PEARL generates the datasets."""

    def __init__(self, rng: np.random.Generator, act_dim: int):
        self.rng = rng
        self.act_dim = act_dim

    def reset(self, tasks: np.ndarray) -> None:
        """Nothing to remember between episodes."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(observation), self.act_dim)).astype(np.float32)
