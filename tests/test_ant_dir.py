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


def test_episodes_carry_the_torsos_world_position_that_the_observation_leaves_out():
    """Fig. 6-7 draw the ant's x-y: the runner keeps it per row from the env's info, start included,
    and it moves as the simulator's torso does."""
    from smac_lightning.rollout.episodes import LockstepEnvs

    family = AntDirFamily(horizon=25)
    lanes = LockstepEnvs(family.make_env, family.horizon)
    rng = np.random.default_rng(1)
    episodes = lanes.run(family.task_sets()[1][:3], lambda obs: rng.uniform(-0.3, 0.3, (len(obs), 8)), seed=4)
    env = lanes.envs(family.task_sets()[1][:1])[0]
    start, info = env.reset(seed=4)
    np.testing.assert_allclose(episodes["position"][0, 0].numpy(), info["position"], atol=1e-6)
    assert abs(info["position"]).max() < 0.2  # the reset's small noise around the origin
    valid = episodes["valid"]
    moved = (episodes["next", "position"] - episodes["position"])[valid]
    assert moved.abs().max() > 0 and moved.abs().max() < 0.5  # one step of 0.05 s
    np.testing.assert_array_equal(episodes["next", "position"][:, :-1][valid[:, 1:]], episodes["position"][:, 1:][valid[:, 1:]])
