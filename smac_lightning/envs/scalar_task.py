"""What the MuJoCo task envs share: one number as the task, a horizon, and a reward-free mode."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np


class ScalarTaskEnv:
    """Mixed in before a gymnasium MuJoCo env: float32 observations, ``horizon`` steps per
    episode, the task switch (``set_task`` or ``reset(options={"task": ...})``), and
    ``reward_free`` envs that never compute the true reward (the self-supervised phase)."""

    def _init_task(self, task, horizon: int, reward_free: bool) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=self.observation_space.shape, dtype=np.float32)
        self.horizon = horizon
        self.reward_free = reward_free
        self.set_task(task)
        self._t = 0

    def set_task(self, task) -> None:
        self.task = float(np.asarray(task).reshape(-1)[0])

    def reset(self, *, seed=None, options=None):
        if options and "task" in options:
            self.set_task(options["task"])
        self._t = 0
        observation, info = super().reset(seed=seed)
        return observation.astype(np.float32), self._with_position(info)

    def _transition(self, reward: Callable[[], float], terminated: bool, info: dict):
        """The step's return value; ``reward`` is only called when the env is not reward-free."""
        self._t += 1
        value = float("nan") if self.reward_free else float(reward())
        return self._get_obs().astype(np.float32), value, terminated, self._t >= self.horizon, self._with_position(info)

    def position(self) -> np.ndarray | None:
        """The agent's x-y in the world where the observation leaves it out (Ant, Humanoid), for
        trajectory pictures; None where the family has no plane to draw."""
        return None

    def _with_position(self, info: dict) -> dict:
        position = self.position()
        return info if position is None else {**info, "position": position}
