import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import smac_lightning.envs  # noqa: F401  (registers the envs)
from smac_lightning.envs import AntDirFamily
from smac_lightning.envs.ant_dir import AntDirEnv


def test_reward_follows_the_formula_from_the_simulators_own_state():
    direction = 2.0
    env = AntDirEnv(direction=direction, horizon=40)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    dt = env.model.opt.timestep * env.frame_skip
    for _ in range(40):
        action = rng.uniform(-1, 1, 8).astype(np.float32)
        before = env.data.xpos[1, :2].copy()  # body 1 is the torso
        _, reward, terminated, truncated, _ = env.step(action)
        velocity = (env.data.xpos[1, :2] - before) / dt
        contact = 5e-4 * np.sum(np.square(np.clip(env.data.cfrc_ext, -1.0, 1.0)))
        expected = velocity @ [np.cos(direction), np.sin(direction)] + 1.0 - 0.5 * np.sum(action**2) - contact
        assert reward == pytest.approx(expected, abs=1e-9)
        healthy = 0.2 <= env.data.qpos[2] <= 1.0
        assert terminated == (not healthy)
        if terminated:
            break


def test_episode_ends_when_the_torso_leaves_the_height_range():
    env = AntDirEnv(horizon=10)
    env.reset(seed=0)
    env.data.qpos[2] = 1.5  # lift the torso out of [0.2, 1.0]
    assert env.step(np.zeros(8, np.float32))[2]


def test_registered_checked_and_float32():
    env = gym.make("smac_lightning/AntDir-v0", direction=1.0, horizon=10)
    check_env(env.unwrapped, skip_render_check=True)  # no display here
    observation, _ = env.reset(seed=1)
    assert observation.shape == (27,) and observation.dtype == np.float32


def test_seeds_reproduce_and_task_draw_is_seeded():
    a, b = AntDirEnv(1.0), AntDirEnv(1.0)
    np.testing.assert_array_equal(a.reset(seed=4)[0], b.reset(seed=4)[0])
    train, test = AntDirFamily().task_sets()
    assert train.shape == (100, 1) and test.shape == (20, 1)
    np.testing.assert_array_equal(np.concatenate([train, test]), np.random.default_rng(1337).uniform(0, 2 * np.pi, (120, 1)))
