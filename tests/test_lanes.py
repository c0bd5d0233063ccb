"""Lock-step collection: TorchRL's spec check, each lane on its own task, seeds, early episode ends."""

import numpy as np
import torch
from torchrl.envs.utils import check_env_specs

from smac_lightning.collect import ExplorationCollector
from smac_lightning.evaluation import prior
from smac_lightning.envs import HopperParamFamily, PointRobotFamily
from smac_lightning.envs.point_robot import point_robot_reward
from smac_lightning.lanes import TaskLanes
from smac_lightning.nn import TanhGaussianPolicy


def test_task_lanes_pass_torchrls_spec_check():
    family = PointRobotFamily(num_train_tasks=3, num_test_tasks=1)
    train, _ = family.task_sets()
    lanes = TaskLanes([family.make_env(task) for task in train])
    check_env_specs(lanes, seed=0)
    lanes.close()


def _collector(family, reward_free=False):
    train, _ = family.task_sets()
    env = family.make_env(train[0])
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(env.observation_space.shape[0], env.action_space.shape[0], 3, [16])
    env.close()
    return ExplorationCollector(family, train, policy, latent_dim=3, reward_free=reward_free), train


def test_each_lane_runs_its_own_task_and_seeds_repeat():
    family = PointRobotFamily(num_train_tasks=6, num_test_tasks=1, horizon=10)
    collector, train = _collector(family)
    tasks = torch.tensor([4, 1, 4, 0])
    torch.manual_seed(1)
    batch = collector.trajectories(tasks, *prior(4, 3), seed=5)
    assert tuple(batch.batch_size) == (4, 10)
    assert (batch["task"].squeeze(-1) == tasks[:, None]).all()
    for lane, task in enumerate(tasks.tolist()):
        positions = batch["next", "observation"][lane].numpy()
        expected = point_robot_reward(positions, train[task], sparse=False, goal_radius=0.2)
        np.testing.assert_allclose(batch["reward"][lane].squeeze(-1).numpy(), expected, rtol=1e-5)
    # lanes 0 and 2 run the same task with different z's: different trajectories
    assert not torch.equal(batch["action"][0], batch["action"][2])
    torch.manual_seed(1)
    again = collector.trajectories(tasks, *prior(4, 3), seed=5)
    assert torch.equal(again["observation"], batch["observation"]) and torch.equal(again["action"], batch["action"])
    # fewer lanes next (a round's adaptation stage after its exploration), with a z per lane
    adapted = collector.trajectories(torch.tensor([2, 3]), torch.randn(2, 3), torch.full((2, 3), 0.1), seed=9)
    assert tuple(adapted.batch_size) == (2, 10) and (adapted["task"][:, 0, 0] == torch.tensor([2, 3])).all()
    collector.shutdown()


def test_a_lane_whose_episode_ends_early_starts_another():
    family = HopperParamFamily(num_train_tasks=2, num_test_tasks=1, horizon=200)
    collector, _ = _collector(family)
    batch = collector.trajectories(torch.tensor([0, 1]), *prior(2, 3), seed=0)
    assert tuple(batch.batch_size) == (2, 200)
    ended = batch["terminated"].squeeze(-1)
    assert ended.any(), "an untrained hopper falls within 200 steps"
    lane, t = (int(i) for i in ended.nonzero()[0])
    if t + 1 < 200:  # the next row starts a fresh episode near the initial height (1.25)
        assert abs(float(batch["observation"][lane, t + 1, 0]) - 1.25) < 0.01
    collector.shutdown()
