"""The runners: each lane on its own task, seeds that repeat, early episode ends, whole-episode rounds;
the TorchRL collector giving the lock-step runner's rows, in this process or over worker processes."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from smac_lightning.envs import AntDirFamily, HopperParamFamily, PointRobotFamily
from smac_lightning.envs.point_robot import point_robot_reward
from smac_lightning.nn import TanhGaussianPolicy, prior
from smac_lightning.rollout import CollectorEnvs, LatentPolicy, LockstepEnvs, collect_steps
from smac_lightning.rollout.episodes import action_saturation


def _policy(family, latent=3):
    env = family.make_env(family.task_sets()[0][0])
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(env.observation_space.shape[0], env.action_space.shape[0], latent, [16])
    env.close()
    return policy


def test_each_lane_runs_its_own_task_and_seeds_repeat():
    family = PointRobotFamily(num_train_tasks=6, num_test_tasks=1, horizon=10)
    train, _ = family.task_sets()
    lanes, policy = LockstepEnvs(family.make_env, family.horizon), _policy(family)
    tasks = train[[4, 1, 4, 0]]
    torch.manual_seed(1)
    batch = lanes.run(tasks, LatentPolicy(policy, *prior(4, 3), per_step=True).act, seed=5)
    assert tuple(batch.batch_size) == (4, 10) and batch["valid"].all()
    for lane, goal in enumerate(tasks):
        expected = point_robot_reward(batch["next", "observation"][lane].numpy(), goal, sparse=False, goal_radius=0.2)
        np.testing.assert_allclose(batch["reward"][lane].squeeze(-1).numpy(), expected, rtol=1e-5)
    # lanes 0 and 2 run the same task with different z's: different trajectories
    assert not torch.equal(batch["action"][0], batch["action"][2])
    torch.manual_seed(1)
    again = lanes.run(tasks, LatentPolicy(policy, *prior(4, 3), per_step=True).act, seed=5)
    assert torch.equal(again["observation"], batch["observation"]) and torch.equal(again["action"], batch["action"])
    # fewer lanes next, on other tasks: the pooled envs switch to them
    other = lanes.run(train[[2, 3]], LatentPolicy(policy, torch.randn(2, 3), torch.full((2, 3), 0.1)).act, seed=9)
    expected = point_robot_reward(other["next", "observation"][1].numpy(), train[3], sparse=False, goal_radius=0.2)
    np.testing.assert_allclose(other["reward"][1].squeeze(-1).numpy(), expected, rtol=1e-5)
    lanes.close()


def test_a_lane_whose_episode_ends_early_stops_and_a_round_of_whole_episodes_makes_up_the_steps():
    family = HopperParamFamily(num_train_tasks=2, num_test_tasks=1, horizon=200)
    train, _ = family.task_sets()
    lanes, policy = LockstepEnvs(family.make_env, family.horizon), _policy(family)
    rounds = []

    def run_round(active, k):
        rounds.append(list(active))
        return lanes.run(train[active], LatentPolicy(policy, *prior(len(active), 3)).act, seed=100 * k)

    rows = collect_steps(run_round, entries=2, steps=200, lanes_per_entry=1)
    first = lanes.run(train, LatentPolicy(policy, *prior(2, 3)).act, seed=0)
    ended = first["terminated"].squeeze(-1) & first["valid"]
    assert ended.any(), "an untrained hopper falls within 200 steps"
    lane, t = (int(i) for i in ended.nonzero()[0])
    assert not first["valid"][lane, t + 1 :].any() and (first["observation"][lane, t + 1 :] == 0).all()
    assert len(rounds) > 1 and rounds[0] == [0, 1]  # only entries short of steps run again
    for entry in rows:
        assert entry.batch_size[0] >= 200 and "valid" not in entry.keys()
        # whole episodes, one after another: every episode but the last ends in a termination
        ends = (entry["terminated"] | entry["truncated"]).squeeze(-1).nonzero().flatten()
        assert ends[-1] == entry.batch_size[0] - 1
    lanes.close()


def test_action_saturation_counts_components_at_the_box_edge_on_valid_steps():
    steps = TensorDict(
        {
            "action": torch.tensor([[[1.0, 0.0], [-0.99, -0.96], [0.2, 0.96]], [[0.5, 0.5], [1.0, 1.0], [1.0, 1.0]]]),
            "valid": torch.tensor([[True, True, True], [True, False, False]]),
        },
        batch_size=[2, 3],
    )
    # valid steps: 1/2, 2/2, 1/2 in episode 0 and 0/2 in episode 1 -> (0.5 + 1 + 0.5 + 0) / 4
    assert action_saturation(steps) == pytest.approx(0.5)


def _same_valid_rows(expected: TensorDict, got: TensorDict) -> None:
    assert torch.equal(expected["valid"], got["valid"])
    valid = expected["valid"]
    for key in expected.keys(True, True):
        assert torch.equal(expected[key][valid], got[key][valid]), key
    assert (got["reward"][~valid] == 0).all() and (got["observation"][~valid] == 0).all()


@pytest.mark.parametrize("family, lane_counts", [
    (PointRobotFamily(num_train_tasks=6, num_test_tasks=1, horizon=10), [4, 2, 6]),  # more lanes later: the env grows
    (HopperParamFamily(num_train_tasks=3, num_test_tasks=1, horizon=200), [3, 2]),  # lanes end early and rest
    (AntDirFamily(num_train_tasks=3, num_test_tasks=1, horizon=25), [3]),  # the torso's position, from the env's info
])
def test_the_torchrl_collector_gives_the_runners_rows(family, lane_counts):
    train, _ = family.task_sets()
    policy = _policy(family)
    runner, collector = LockstepEnvs(family.make_env, family.horizon), CollectorEnvs(family.make_env, family.horizon)
    for k, n in enumerate(lane_counts):
        tasks = train[np.arange(n) % len(train)][::-1].copy()
        runs = []
        for lanes in (runner, collector):
            torch.manual_seed(k)  # the policy draws z and actions from the global generator, once per step
            runs.append(lanes.run(tasks, LatentPolicy(policy, *prior(n, 3), per_step=True).act, seed=10 * k))
        _same_valid_rows(*runs)
    if isinstance(family, HopperParamFamily):
        assert not runs[1]["valid"].all(), "an untrained hopper falls within 200 steps"
    if isinstance(family, AntDirFamily):
        assert runs[1]["position"].abs().sum() > 0
    runner.close()
    collector.close()


@pytest.mark.slow
def test_collection_over_worker_processes_gives_the_same_rows():
    family = PointRobotFamily(num_train_tasks=4, num_test_tasks=1, horizon=10)
    train, _ = family.task_sets()
    policy = _policy(family)
    runs = []
    for lanes in (LockstepEnvs(family.make_env, family.horizon), CollectorEnvs(family.make_env, family.horizon, processes=2)):
        torch.manual_seed(3)
        runs.append(lanes.run(train, LatentPolicy(policy, *prior(4, 3), per_step=True).act, seed=7))
        lanes.close()
    _same_valid_rows(*runs)
