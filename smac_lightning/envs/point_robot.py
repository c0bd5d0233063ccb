"""Point Robot: a 2-D point steered to a goal on the upper half of the unit circle.

The PEARL/MACAW navigation family. Tasks are goals; the dense reward is the
negative distance to the goal, the sparse one is ``1 - distance`` inside
``goal_radius`` and 0 elsewhere.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError

MAX_DISPLACEMENT = 0.1  # per step, so a 20-step episode can travel twice the goal radius


def point_robot_reward(position: np.ndarray, goal: np.ndarray, sparse: bool, goal_radius: float) -> np.ndarray:
    distance = np.linalg.norm(position - goal, axis=-1)
    if sparse:
        return np.where(distance <= goal_radius, 1.0 - distance, 0.0)
    return -distance


class PointRobotEnv(gym.Env):
    """A point at the origin that moves by ``0.1 * clip(action, -1, 1)`` each step."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        goal=(1.0, 0.0),
        horizon: int = 20,
        sparse: bool = False,
        goal_radius: float = 0.2,
        reward_free: bool = False,
    ):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.horizon = horizon
        self.sparse = sparse
        self.goal_radius = goal_radius
        self.reward_free = reward_free
        self.set_task(goal)
        self._position = np.zeros(2)
        self._t = 0

    def set_task(self, goal) -> None:
        self.goal = np.asarray(goal, dtype=np.float64).reshape(2)

    def reward(self, position: np.ndarray) -> float:
        return float(point_robot_reward(position, self.goal, self.sparse, self.goal_radius))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._position = np.zeros(2)
        self._t = 0
        return self._position.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._position = self._position + MAX_DISPLACEMENT * action
        self._t += 1
        # Reward-free envs are what the self-supervised phase sees: the true reward is never computed.
        reward = float("nan") if self.reward_free else self.reward(self._position)
        truncated = self._t >= self.horizon
        return self._position.astype(np.float32), reward, False, truncated, {}


class GoalSeeker:
    """Scripted, deliberately sub-optimal behaviour: noisy motion toward an intended goal.

    Each episode the intended goal is the task's goal with probability
    ``p_true_goal`` and otherwise a random point on the half circle, so much of
    the data heads somewhere unrewarded, and the Gaussian action noise keeps
    even the good episodes far from optimal.
    """

    def __init__(self, rng: np.random.Generator, p_true_goal: float, noise: float = 0.5, gain: float = 5.0):
        self.rng = rng
        self.p_true_goal = p_true_goal
        self.noise = noise
        self.gain = gain
        self._intended = None

    def reset(self, tasks: np.ndarray) -> None:
        n = len(tasks)
        decoys = np.stack([np.cos(a := self.rng.uniform(0, np.pi, n)), np.sin(a)], axis=-1)
        keep = self.rng.random(n) < self.p_true_goal
        self._intended = np.where(keep[:, None], tasks, decoys)

    def act(self, observation: np.ndarray) -> np.ndarray:
        direction = self.gain * (self._intended - observation)
        noisy = direction + self.noise * self.rng.standard_normal(direction.shape)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)


class PointRobotFamily(TaskFamily):
    """Goals on the upper half of the unit circle (angle ~ U[0, pi])."""

    name = "point_robot"

    def __init__(
        self,
        num_train_tasks: int = 40,
        num_test_tasks: int = 10,
        horizon: int = 20,
        sparse: bool = False,
        goal_radius: float = 0.2,
        seed: int = 1337,
        p_true_goal: float = 0.0,
    ):
        """
        Args:
            num_train_tasks: goals used for (meta-)training.
            num_test_tasks: held-out goals for meta-test evaluation.
            horizon: steps per episode.
            sparse: reward ``1 - distance`` only within ``goal_radius`` of the goal.
            goal_radius: radius of the sparse reward region.
            seed: seed of the fixed train/test goal draw.
            p_true_goal: share of the scripted data's episodes that head for the task's goal; the others
                head for a random point on the half circle (``GoalSeeker``). Default 0: goal-blind data,
                whose rewards alone say where the goal is (chosen on training tasks:
                docs/results/point_robot.md).
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)
        if not 0.0 <= p_true_goal <= 1.0:
            raise ConfigError(f"PointRobotFamily: p_true_goal is a probability, got {p_true_goal}")
        self.p_true_goal = p_true_goal
        self.sparse = sparse
        self.goal_radius = goal_radius

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        angles = np.random.default_rng(seed).uniform(0.0, np.pi, size=n)
        return np.stack([np.cos(angles), np.sin(angles)], axis=-1)

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> PointRobotEnv:
        return PointRobotEnv(task, self.horizon, self.sparse, self.goal_radius, reward_free)

    def positions(self, observation: np.ndarray) -> np.ndarray:
        return observation[..., :2]

    def behaviour_policy(self, rng: np.random.Generator) -> GoalSeeker:
        return GoalSeeker(rng, self.p_true_goal)

    def data_tag(self) -> str:
        return f"-goal{self.p_true_goal:g}"

    def config(self) -> dict:
        return {**super().config(), "sparse": self.sparse, "goal_radius": self.goal_radius, "p_true_goal": self.p_true_goal}
