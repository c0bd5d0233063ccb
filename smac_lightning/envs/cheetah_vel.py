"""Cheetah Velocity: HalfCheetah (gymnasium v5, MuJoCo) rewarded for running at a target speed.

Tasks are target forward velocities ~ U[0, 3]; reward = -|v_x - v_target| - 0.05 * sum(a^2),
with v_x the finite-difference x velocity of the torso over one control step (as gymnasium
computes it). Observations are gymnasium's 17-d v5 observations (positions without x, then
velocities), as float32; the paper's 20-d state with positions is not offered yet.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from smac_lightning.envs.base import TaskFamily, UniformRandomBehaviour
from smac_lightning.envs.scalar_task import ScalarTaskEnv

CONTROL_COST = 0.05


class CheetahVelEnv(ScalarTaskEnv, HalfCheetahEnv):
    def __init__(self, target_velocity: float = 1.0, horizon: int = 200, reward_free: bool = False, **kwargs):
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=CONTROL_COST, **kwargs)
        self._init_task(target_velocity, horizon, reward_free)

    @property
    def target_velocity(self) -> float:
        return self.task

    def step(self, action):
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_velocity = (self.data.qpos[0] - x_before) / self.dt

        def reward():
            return -abs(x_velocity - self.task) - CONTROL_COST * float(np.sum(np.square(action)))

        return self._transition(reward, False, {"x_velocity": x_velocity})


class CheetahVelFamily(TaskFamily):
    """Target velocities ~ U[0, 3]; the authors drew 130 with seed 1337: 100 train, 30 held out."""

    name = "cheetah_vel"

    def __init__(self, num_train_tasks: int = 100, num_test_tasks: int = 30, horizon: int = 200, seed: int = 1337):
        """
        Args:
            num_train_tasks: target velocities used for (meta-)training.
            num_test_tasks: held-out target velocities for meta-test evaluation.
            horizon: steps per episode.
            seed: seed of the fixed train/test draw.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0.0, 3.0, size=(n, 1))

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> CheetahVelEnv:
        return CheetahVelEnv(task, self.horizon, reward_free)

    def behaviour_policy(self, rng: np.random.Generator) -> UniformRandomBehaviour:
        return UniformRandomBehaviour(rng, act_dim=6)
