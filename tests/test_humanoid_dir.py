import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import smac_lightning.envs  # noqa: F401  (registers the envs)
from smac_lightning.envs import HumanoidDirFamily
from smac_lightning.envs.humanoid_dir import HumanoidDirEnv


def _centre_of_mass_xy(env) -> np.ndarray:
    mass = env.model.body_mass[:, None]
    return (mass * env.data.xipos).sum(0)[:2] / mass.sum()


def test_reward_follows_the_formula_from_the_simulators_own_state():
    direction = 2.0
    env = HumanoidDirEnv(direction, horizon=100)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    unit = np.array([np.cos(direction), np.sin(direction)])
    for _ in range(100):
        action = rng.uniform(-0.4, 0.4, 17).astype(np.float32)
        before = _centre_of_mass_xy(env)
        _, reward, terminated, truncated, _ = env.step(action)
        velocity = (_centre_of_mass_xy(env) - before) / (env.model.opt.timestep * env.frame_skip)
        standing = 1.0 < env.data.qpos[2] < 2.0
        contact = min(5e-7 * float(np.sum(env.data.cfrc_ext**2)), 10.0)
        expected = 1.25 * velocity @ unit + 5.0 * standing - 0.1 * float(np.sum(env.data.ctrl**2)) - contact
        assert reward == pytest.approx(expected, abs=1e-9)
        assert terminated == (not standing)
        if terminated or truncated:
            break


def test_registered_checked_reward_free_and_seeded():
    env = gym.make("smac_lightning/HumanoidDir-v0", direction=1.0, horizon=10)
    check_env(env.unwrapped, skip_render_check=True)
    a, b = HumanoidDirEnv(1.0), HumanoidDirEnv(1.0, reward_free=True)
    np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    action = np.full(17, 0.1, np.float32)
    (obs_a, reward_a, *_), (obs_b, reward_b, *_) = a.step(action), b.step(action)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.shape == (348,) and obs_a.dtype == np.float32
    assert np.isfinite(reward_a) and np.isnan(reward_b)


def test_task_sets_are_the_seeded_uniform_draw():
    train, test = HumanoidDirFamily().task_sets()
    draw = np.random.default_rng(1337).uniform(0.0, 2 * np.pi, size=(55, 1))
    np.testing.assert_array_equal(np.concatenate([train, test]), draw)
