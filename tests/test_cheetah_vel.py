import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import smac_lightning.envs  # noqa: F401  (registers the envs)
from smac_lightning.envs import CheetahVelFamily
from smac_lightning.envs.cheetah_vel import CheetahVelEnv


def test_reward_follows_the_formula_from_the_simulators_own_positions():
    env = CheetahVelEnv(target_velocity=1.5, horizon=50)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = rng.uniform(-1, 1, 6).astype(np.float32)
        x_before = float(env.data.qpos[0])
        _, reward, terminated, truncated, _ = env.step(action)
        velocity = (float(env.data.qpos[0]) - x_before) / (env.model.opt.timestep * env.frame_skip)
        assert reward == pytest.approx(-abs(velocity - 1.5) - 0.05 * float(np.sum(action**2)), abs=1e-9)
    assert truncated and not terminated


def test_registered_checked_and_float32():
    env = gym.make("smac_lightning/CheetahVel-v0", target_velocity=0.5, horizon=10)
    check_env(env.unwrapped, skip_render_check=True)  # no display here
    observation, _ = env.reset(seed=1)
    assert observation.shape == (17,) and observation.dtype == np.float32


def test_seeds_reproduce_and_reward_free_hides_the_reward():
    a, b = CheetahVelEnv(1.0), CheetahVelEnv(1.0, reward_free=True)
    np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    action = np.full(6, 0.3, np.float32)
    obs_a, reward_a, *_ = a.step(action)
    obs_b, reward_b, *_ = b.step(action)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert np.isfinite(reward_a) and np.isnan(reward_b)


def test_task_sets_are_the_seeded_uniform_draw():
    train, test = CheetahVelFamily().task_sets()
    assert train.shape == (100, 1) and test.shape == (30, 1)
    draw = np.random.default_rng(1337).uniform(0.0, 3.0, size=(130, 1))
    np.testing.assert_array_equal(np.concatenate([train, test]), draw)


def test_paper_observation_adds_the_torso_position():
    paper, v5 = CheetahVelEnv(1.0, paper_observation=True), CheetahVelEnv(1.0)
    check_env(paper, skip_render_check=True)
    observation, _ = paper.reset(seed=0)
    np.testing.assert_array_equal(observation[:17], v5.reset(seed=0)[0])
    action = np.full(6, 0.5, np.float32)
    for _ in range(30):
        observation, *_ = paper.step(action)
    assert observation.shape == (20,) and observation.dtype == np.float32
    # the root's x is the torso's; MuJoCo's xpos comes from the last substep's forward pass, so it lags qpos slightly
    assert observation[17] == pytest.approx(paper.data.qpos[0], abs=0.01) and observation[17] > 0.1
    assert CheetahVelFamily(paper_observation=True).config()["paper_observation"] is True
