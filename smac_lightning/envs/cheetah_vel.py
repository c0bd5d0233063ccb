"""Cheetah Velocity: HalfCheetah (gymnasium v5, MuJoCo) rewarded for running at a target speed.

Tasks are target forward velocities ~ U[0, 3]; reward = -|v_x - v_target| - 0.05 * sum(a^2),
with v_x the finite-difference x velocity of the torso over one control step (as gymnasium
computes it). Observations are gymnasium's 17-d v5 observations (positions without x, then
velocities), as float32; ``paper_observation=True`` gives the paper's (PEARL's) 20-d state
instead: the same 17 values followed by the torso's x, y, z position, which tells the agent
how far it has run.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from smac_lightning.envs.base import TaskFamily, UniformRandomBehaviour
from smac_lightning.envs.scalar_task import ScalarTaskEnv

CONTROL_COST = 0.05


class CheetahVelEnv(ScalarTaskEnv, HalfCheetahEnv):
    def __init__(
        self, target_velocity: float = 1.0, horizon: int = 200, reward_free: bool = False, paper_observation: bool = False, **kwargs
    ):
        HalfCheetahEnv.__init__(self, ctrl_cost_weight=CONTROL_COST, **kwargs)
        self.paper_observation = paper_observation
        if paper_observation:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(20,), dtype=np.float64)
        self._init_task(target_velocity, horizon, reward_free)

    def _get_obs(self):
        observation = super()._get_obs()
        if self.paper_observation:
            observation = np.concatenate([observation, self.data.body("torso").xpos])
        return observation

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

    def __init__(
        self, num_train_tasks: int = 100, num_test_tasks: int = 30, horizon: int = 200, seed: int = 1337, paper_observation: bool = False
    ):
        """
        Args:
            num_train_tasks: target velocities used for (meta-)training.
            num_test_tasks: held-out target velocities for meta-test evaluation.
            horizon: steps per episode.
            seed: seed of the fixed train/test draw.
            paper_observation: the paper's 20-d state (v5's 17 values + torso position) instead of v5's 17-d one.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)
        self.paper_observation = paper_observation

    def config(self) -> dict:
        return {**super().config(), "paper_observation": self.paper_observation}

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0.0, 3.0, size=(n, 1))

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> CheetahVelEnv:
        return CheetahVelEnv(task, self.horizon, reward_free, self.paper_observation)

    def behaviour_policy(self, rng: np.random.Generator) -> UniformRandomBehaviour:
        return UniformRandomBehaviour(rng, act_dim=6)
