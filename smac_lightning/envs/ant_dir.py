"""Ant Direction: the MuJoCo Ant (gymnasium v5) rewarded for running in a task direction.

Tasks are directions ~ U[0, 2 pi) on the plane; reward = torso velocity projected on the
direction - 0.5 * sum(a^2) - contact cost + 1 for staying alive; the episode ends when the
torso leaves [0.2, 1.0] in height. Observations are v5's 27-d ones without contact forces
(PEARL's setting), as float32.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from smac_lightning.envs.base import TaskFamily, UniformRandomBehaviour
from smac_lightning.envs.scalar_task import ScalarTaskEnv


class AntDirEnv(ScalarTaskEnv, AntEnv):
    def __init__(self, direction: float = 0.0, horizon: int = 200, reward_free: bool = False, **kwargs):
        AntEnv.__init__(self, include_cfrc_ext_in_observation=False, **kwargs)
        self._init_task(direction, horizon, reward_free)

    @property
    def direction(self) -> float:
        return self.task

    def step(self, action):
        before = self.data.body(self._main_body).xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        velocity = (self.data.body(self._main_body).xpos[:2] - before) / self.dt

        def reward():
            progress = velocity @ np.array([np.cos(self.task), np.sin(self.task)])
            return progress + self.healthy_reward - self.control_cost(action) - self.contact_cost

        return self._transition(reward, not self.is_healthy, {"xy_velocity": velocity})

    def position(self) -> np.ndarray:
        return self.data.body(self._main_body).xpos[:2].copy()


class AntDirFamily(TaskFamily):
    """Directions ~ U[0, 2 pi), drawn with seed 1337: 100 train, 20 held out."""

    name = "ant_dir"

    def __init__(self, num_train_tasks: int = 100, num_test_tasks: int = 20, horizon: int = 200, seed: int = 1337):
        """
        Args:
            num_train_tasks: directions used for (meta-)training.
            num_test_tasks: held-out directions for meta-test evaluation.
            horizon: steps per episode (fewer if the ant falls).
            seed: seed of the fixed train/test draw.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0.0, 2 * np.pi, size=(n, 1))

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> AntDirEnv:
        return AntDirEnv(task, self.horizon, reward_free)

    def behaviour_policy(self, rng: np.random.Generator) -> UniformRandomBehaviour:
        return UniformRandomBehaviour(rng, act_dim=8)
