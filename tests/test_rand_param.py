import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import smac_lightning.envs  # noqa: F401  (registers the envs)
from smac_lightning.envs import HopperParamFamily, WalkerParamFamily
from smac_lightning.envs.rand_param import RANDOMISED, HopperParamEnv, WalkerParamEnv

ENVS = {"walker": (WalkerParamEnv, 6, (0.8, 2.0), (-1.0, 1.0)), "hopper": (HopperParamEnv, 3, (0.7, np.inf), (-0.2, 0.2))}


@pytest.mark.parametrize("name", ENVS)
def test_reward_and_falls_follow_the_formula_from_the_simulators_own_state(name):
    env_class, act_dim, z_range, angle_range = ENVS[name]
    env = env_class(np.random.default_rng(0).uniform(-3, 3, env_class().task_dim), horizon=200)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(200):
        action = rng.uniform(-1, 1, act_dim).astype(np.float32)
        x_before = float(env.data.qpos[0])
        _, reward, terminated, truncated, _ = env.step(action)
        velocity = (float(env.data.qpos[0]) - x_before) / (env.model.opt.timestep * env.frame_skip)
        z, angle = env.data.qpos[1], env.data.qpos[2]
        standing = z_range[0] < z < z_range[1] and angle_range[0] < angle < angle_range[1]
        if name == "hopper":  # rand_param_envs' hopper also falls when any other state leaves (-100, 100)
            standing = standing and bool((np.abs(env.state_vector()[2:]) < 100).all())
        assert terminated == (not standing)
        assert reward == pytest.approx(velocity + float(standing) - 1e-3 * float(np.sum(action**2)), abs=1e-9)
        if terminated or truncated:
            break
    assert terminated, "random actions should make it fall within 200 steps"


@pytest.mark.parametrize("env_class", [WalkerParamEnv, HopperParamEnv])
def test_task_switches_scale_the_defaults_and_never_accumulate(env_class):
    env = env_class()
    defaults = {name: getattr(env.model, name).copy() for name in RANDOMISED}
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-3, 3, env.task_dim), rng.uniform(-3, 3, env.task_dim)
    env.set_task(a)
    mass_a = env.model.body_mass.copy()
    np.testing.assert_allclose(mass_a, defaults["body_mass"] * 1.5 ** a[: mass_a.size])
    damping = env.model.dof_damping.copy()
    start = mass_a.size + env.model.body_inertia.size
    np.testing.assert_allclose(damping, defaults["dof_damping"] * 1.3 ** a[start : start + damping.size])
    env.set_task(b)
    env.set_task(a)
    fresh = env_class(a)
    for name in RANDOMISED:
        np.testing.assert_array_equal(getattr(env.model, name), getattr(fresh.model, name))
    np.testing.assert_array_equal(env.model.body_subtreemass, fresh.model.body_subtreemass)
    env.reset(options={"task": np.zeros(env.task_dim)})
    for name in RANDOMISED:
        np.testing.assert_array_equal(getattr(env.model, name), defaults[name])  # bit-identical defaults


def test_derived_constants_are_refreshed():
    env = WalkerParamEnv(np.full(WalkerParamEnv().task_dim, 2.0))
    # the world body's subtree mass is the whole robot's: it must follow the scaled masses
    assert env.model.body_subtreemass[0] == pytest.approx(env.model.body_mass.sum())
    assert env.model.body_subtreemass[0] == pytest.approx(WalkerParamEnv().model.body_mass.sum() * 1.5**2)


def test_physics_differ_between_tasks_and_seeds_reproduce():
    train, _ = WalkerParamFamily().task_sets()
    family = WalkerParamFamily()
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 6)).astype(np.float32)

    def trajectory(task):
        env = family.make_env(task)
        observations = [env.reset(seed=5)[0]]
        observations += [env.step(a)[0] for a in actions]
        return np.stack(observations)

    np.testing.assert_array_equal(trajectory(train[0]), trajectory(train[0]))
    assert not np.allclose(trajectory(train[0]), trajectory(train[1]))


@pytest.mark.parametrize("family_class,tasks", [(WalkerParamFamily, (50, 5)), (HopperParamFamily, (50, 5))])
def test_task_sets_are_the_seeded_log_uniform_exponents(family_class, tasks):
    family = family_class()
    train, test = family.task_sets()
    assert (len(train), len(test)) == tasks
    draw = np.random.default_rng(1337).uniform(-3, 3, size=(sum(tasks), family.task_dim))
    np.testing.assert_array_equal(np.concatenate([train, test]), draw)


@pytest.mark.parametrize("env_id", ["smac_lightning/WalkerParam-v0", "smac_lightning/HopperParam-v0"])
def test_registered_and_checked(env_id):
    env = gym.make(env_id, horizon=10)
    check_env(env.unwrapped, skip_render_check=True)
    observation, _ = env.reset(seed=0)
    assert observation.dtype == np.float32
