import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import smac_lightning.envs  # noqa: F401  (registers the envs)
from smac_lightning.envs import PointRobotFamily
from smac_lightning.envs.point_robot import PointRobotEnv
from smac_lightning.rollout import run_episodes


def _positions(env, actions):
    """Where the point is after each action, integrated independently of the env."""
    return np.cumsum(0.1 * np.clip(actions, -1, 1), axis=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_rewards_follow_the_formula_on_a_real_rollout(sparse):
    goal = np.array([np.cos(1.0), np.sin(1.0)])
    env = PointRobotEnv(goal, horizon=20, sparse=sparse, goal_radius=0.3)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    # steer roughly toward the goal so the sparse region is entered
    actions = np.clip(goal * 1.2 + 0.3 * rng.standard_normal((20, 2)), -1.5, 1.5)
    rewards, observations = [], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(a)
        rewards.append(r)
        observations.append(obs)
    distance = np.linalg.norm(_positions(env, actions) - goal, axis=-1)
    expected = np.where(distance <= 0.3, 1 - distance, 0.0) if sparse else -distance
    np.testing.assert_allclose(rewards, expected, atol=1e-6)
    np.testing.assert_allclose(observations, _positions(env, actions), atol=1e-6)
    assert truncated and not terminated
    if sparse:
        assert (np.array(rewards) > 0).any() and (np.array(rewards) == 0).any()


def test_registered_with_gymnasium_and_passes_the_env_checker():
    env = gym.make("smac_lightning/PointRobot-v0", goal=(0.0, 1.0), horizon=5)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (2,) and obs.dtype == np.float32


def test_reward_free_env_never_gives_the_true_reward():
    env = PointRobotEnv((1.0, 0.0), reward_free=True)
    env.reset()
    assert np.isnan(env.step(np.ones(2))[1])


def test_task_sets_are_seeded_fixed_and_on_the_half_circle():
    a_train, a_test = PointRobotFamily(num_train_tasks=5, num_test_tasks=3, seed=7).task_sets()
    b_train, b_test = PointRobotFamily(num_train_tasks=5, num_test_tasks=3, seed=7).task_sets()
    c_train, _ = PointRobotFamily(num_train_tasks=5, num_test_tasks=3, seed=8).task_sets()
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_test, b_test)
    assert not np.allclose(a_train, c_train)
    tasks = np.concatenate([a_train, a_test])
    np.testing.assert_allclose(np.linalg.norm(tasks, axis=-1), 1.0)
    assert (tasks[:, 1] >= 0).all()
    assert len({tuple(t) for t in tasks}) == 8  # held-out goals are not training goals


def test_bad_family_arguments_are_refused():
    with pytest.raises(ValueError, match="num_train_tasks"):
        PointRobotFamily(num_train_tasks=0)
    with pytest.raises(ValueError, match="horizon"):
        PointRobotFamily(horizon=0)
    with pytest.raises(ValueError, match="p_true_goal is a probability, got 1.5"):
        PointRobotFamily(p_true_goal=1.5)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_share_of_goal_directed_episodes_is_the_family_option(p):
    family = PointRobotFamily(num_train_tasks=2000, num_test_tasks=1, p_true_goal=p)
    tasks, _ = family.task_sets()
    behaviour = family.behaviour_policy(np.random.default_rng(0))
    behaviour.reset(tasks)
    share = np.all(behaviour._intended == tasks, axis=-1).mean()
    assert abs(share - p) < 0.03


def test_data_of_another_goal_share_lives_elsewhere_and_is_refused(tmp_path):
    from smac_lightning.data import OfflineMetaDataModule, generate_dataset, load_dataset
    from smac_lightning.errors import DatasetError

    small = dict(num_train_tasks=2, num_test_tasks=1)
    default, other = PointRobotFamily(**small), PointRobotFamily(**small, p_true_goal=0.1)
    names = [OfflineMetaDataModule(f, rl_size=20, encoder_size=20).dataset_dir.name for f in (default, other)]
    assert names == ["point_robot-rl20-enc20-seed0-goal0", "point_robot-rl20-enc20-seed0-goal0.1"]
    generate_dataset(other, tmp_path / "ds", 20, 20, seed=0, progress=False)
    with pytest.raises(DatasetError, match="'p_true_goal': 0.1"):
        load_dataset(tmp_path / "ds", default.config())


def test_behaviour_policy_is_far_from_optimal():
    family = PointRobotFamily(num_train_tasks=20, num_test_tasks=1)
    tasks, _ = family.task_sets()
    envs = [family.make_env(t) for t in tasks]
    behaviour = family.behaviour_policy(np.random.default_rng(0))
    behaviour.reset(tasks)
    data_return = run_episodes(envs, behaviour.act, 20)["reward"].sum(1).mean().item()

    def oracle(obs):
        step = tasks - obs
        return np.clip(10 * step, -1, 1)

    oracle_return = run_episodes(envs, oracle, 20)["reward"].sum(1).mean().item()
    assert data_return < oracle_return - 3.0
