"""Humanoid Direction: the MuJoCo Humanoid (gymnasium v5) rewarded for walking in a task direction.

Tasks are directions ~ U[0, 2 pi); the reward is gymnasium's Humanoid reward with the forward
term replaced by the centre-of-mass velocity along the direction: 1.25 * v . d + 5 (alive)
- 0.1 * sum(ctrl^2) - contact cost; the episode ends when the torso height leaves (1, 2).
Observations are v5's 348-d ones (the paper's 376-d state was v2's, with the world body's
inertia and forces), as float32.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv, mass_center

from smac_lightning.envs.base import TaskFamily, UniformRandomBehaviour
from smac_lightning.envs.scalar_task import ScalarTaskEnv


class HumanoidDirEnv(ScalarTaskEnv, HumanoidEnv):
    def __init__(self, direction: float = 0.0, horizon: int = 200, reward_free: bool = False, **kwargs):
        HumanoidEnv.__init__(self, **kwargs)
        self._init_task(direction, horizon, reward_free)

    @property
    def direction(self) -> float:
        return self.task

    def step(self, action):
        before = mass_center(self.model, self.data)
        self.do_simulation(action, self.frame_skip)
        velocity = (mass_center(self.model, self.data) - before) / self.dt

        def reward():
            progress = self._forward_reward_weight * velocity @ np.array([np.cos(self.task), np.sin(self.task)])
            return progress + self.healthy_reward - self.control_cost(action) - self.contact_cost

        return self._transition(reward, not self.is_healthy, {"xy_velocity": velocity})

    def position(self) -> np.ndarray:
        return mass_center(self.model, self.data)[:2].copy()


class HumanoidDirFamily(TaskFamily):
    """Directions ~ U[0, 2 pi), drawn with seed 1337: 50 train, 5 held out (as the issue's table)."""

    name = "humanoid_dir"

    def __init__(self, num_train_tasks: int = 50, num_test_tasks: int = 5, horizon: int = 200, seed: int = 1337):
        """
        Args:
            num_train_tasks: directions used for (meta-)training.
            num_test_tasks: held-out directions for meta-test evaluation.
            horizon: steps per episode (episodes also end when the humanoid falls).
            seed: seed of the fixed train/test draw.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0.0, 2 * np.pi, size=(n, 1))

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> HumanoidDirEnv:
        return HumanoidDirEnv(task, self.horizon, reward_free)

    def behaviour_policy(self, rng: np.random.Generator) -> UniformRandomBehaviour:
        return UniformRandomBehaviour(rng, act_dim=17)
