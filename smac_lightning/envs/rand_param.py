"""Walker Param and Hopper Param: the MuJoCo walker and hopper with randomised physics.

As in the rand_param_envs benchmark PEARL used: per element, body mass, body inertia and
geom friction are scaled by 1.5^u and joint damping by 1.3^u, u ~ U[-3, 3]. A task is the
vector of all those u's. The reward is gymnasium's v5 one (forward velocity + 1 alive bonus
- 1e-3 * sum(a^2)) and episodes end when the robot falls (gymnasium's v5 health checks).

A task switch writes the compiled ``MjModel`` fields from copies of their defaults saved at
construction, so scalings never accumulate and the model is never recompiled; then
``mujoco.mj_setConst`` recomputes the derived constants (subtree masses, inverse inertias
used by the solver). rand_param_envs never refreshed those: this is a deliberate fix, so a
task's dynamics follow from its parameters alone.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from smac_lightning.envs.base import TaskFamily, UniformRandomBehaviour
from smac_lightning.envs.scalar_task import ScalarTaskEnv

LOG_SCALE_LIMIT = 3.0
RANDOMISED = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


class ParamTaskEnv(ScalarTaskEnv):
    """A ``ScalarTaskEnv`` whose task is a vector of log-scale exponents of ``RANDOMISED`` fields."""

    def _save_defaults(self) -> None:
        self.default_params = {name: getattr(self.model, name).copy() for name in RANDOMISED}

    @property
    def task_dim(self) -> int:
        return sum(value.size for value in self.default_params.values())

    def set_task(self, task) -> None:
        u = np.asarray(task, dtype=np.float64).reshape(-1)
        if u.size != self.task_dim:
            raise ValueError(f"{type(self).__name__} tasks have {self.task_dim} exponents, got {u.size}")
        self.task = u
        offset = 0
        for name, base in RANDOMISED.items():
            default = self.default_params[name]
            getattr(self.model, name)[:] = default * base ** u[offset : offset + default.size].reshape(default.shape)
            offset += default.size
        mujoco.mj_setConst(self.model, self.data)

    def step(self, action):
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_velocity = (self.data.qpos[0] - x_before) / self.dt

        def reward():
            return x_velocity + self.healthy_reward - self.control_cost(action)

        return self._transition(reward, not self.is_healthy, {"x_velocity": x_velocity})


class WalkerParamEnv(ParamTaskEnv, Walker2dEnv):
    def __init__(self, task=None, horizon: int = 200, reward_free: bool = False, **kwargs):
        Walker2dEnv.__init__(self, **kwargs)
        self._save_defaults()
        self._init_task(np.zeros(self.task_dim) if task is None else task, horizon, reward_free)


class HopperParamEnv(ParamTaskEnv, HopperEnv):
    def __init__(self, task=None, horizon: int = 200, reward_free: bool = False, **kwargs):
        HopperEnv.__init__(self, **kwargs)
        self._save_defaults()
        self._init_task(np.zeros(self.task_dim) if task is None else task, horizon, reward_free)


class _ParamFamily(TaskFamily):
    env_class: type[ParamTaskEnv]
    act_dim: int

    def __init__(self, num_train_tasks: int = 50, num_test_tasks: int = 5, horizon: int = 200, seed: int = 1337):
        """
        Args:
            num_train_tasks: physics settings used for (meta-)training.
            num_test_tasks: held-out physics settings for meta-test evaluation.
            horizon: steps per episode (episodes also end when the robot falls).
            seed: seed of the fixed train/test draw.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)
        self.task_dim = self.env_class().task_dim

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, size=(n, self.task_dim))

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> ParamTaskEnv:
        return self.env_class(task, self.horizon, reward_free)

    def behaviour_policy(self, rng: np.random.Generator) -> UniformRandomBehaviour:
        return UniformRandomBehaviour(rng, act_dim=self.act_dim)


class WalkerParamFamily(_ParamFamily):
    """Walker2d physics settings, drawn with seed 1337: 50 train, 5 held out."""

    name = "walker_param"
    env_class = WalkerParamEnv
    act_dim = 6


class HopperParamFamily(_ParamFamily):
    """Hopper physics settings, drawn with seed 1337: 50 train, 5 held out."""

    name = "hopper_param"
    env_class = HopperParamEnv
    act_dim = 3
