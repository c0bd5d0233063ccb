import importlib.util
from pathlib import Path

import numpy as np
import torch

_path = Path(__file__).parent.parent / "diagnostics" / "point_robot_posterior.py"
_spec = importlib.util.spec_from_file_location("point_robot_posterior", _path)
posterior = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(posterior)


def test_heading_straight_to_the_goal_scores_by_hand():
    goal = np.array([[1.0, 0.0]])
    # ten steps of 0.1 reach it: distances 0.9, 0.8, ..., 0.0, then zero for the other ten
    assert abs(posterior.head_straight_to(goal, goal, 20)[0] + 4.5) < 1e-9
    # a target short of the goal: 5 steps to (0.5, 0), then 15 steps at distance 0.5
    short = posterior.head_straight_to(np.array([[0.5, 0.0]]), goal, 20)[0]
    assert abs(short + (0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 15 * 0.5)) < 1e-9


def test_a_probe_run_reaches_its_target_and_stays():
    act = posterior.run_to((1.0, 0.0), noise=0.0, seed=0)
    position, path = np.zeros((1, 2), dtype=np.float32), []
    for _ in range(20):
        position = position + posterior.MAX_DISPLACEMENT * act(position)
        path.append(position[0, 0])
    # full speed (0.1 a step) until 0.2 short, then the gap halves every step: 0.9, 0.95, ...
    np.testing.assert_allclose(path[:10], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], atol=1e-6)
    np.testing.assert_allclose(position, [[1.0, 0.0]], atol=1e-4)


class _ExactDecoder(torch.nn.Module):
    """Rewards -|x - g| with the goal angle read from z's first entry."""

    def forward(self, observation, action, z):
        goal = torch.stack([z[..., 0].cos(), z[..., 0].sin()], -1)
        return -(observation - goal).norm(dim=-1, keepdim=True)


def test_the_decoded_goal_is_the_goal_a_decoder_rewards():
    angles = torch.tensor([0.3, 1.5, 2.9])
    z = torch.stack([angles, torch.zeros(3)], -1)
    decoded = posterior.decoded_goals(_ExactDecoder(), z)
    np.testing.assert_allclose(np.arctan2(decoded[:, 1], decoded[:, 0]), angles.numpy(), atol=np.pi / 180)


_sawyer_path = Path(__file__).parent.parent / "diagnostics" / "sawyer.py"
_sawyer_spec = importlib.util.spec_from_file_location("sawyer_diagnostics", _sawyer_path)
sawyer = importlib.util.module_from_spec(_sawyer_spec)
_sawyer_spec.loader.exec_module(sawyer)


def test_sawyer_data_rewards_are_the_success_test_and_a_changed_one_is_caught(tmp_path):
    from smac_lightning.data.generate import generate_dataset
    from smac_lightning.envs import SawyerFamily

    ds = generate_dataset(SawyerFamily(num_train_tasks=2, num_test_tasks=1, data_horizon=30), tmp_path / "d",
                          rl_size=60, encoder_size=30, seed=0, progress=False)
    tasks, buffer = np.asarray(ds.train_tasks), ds.train_rl
    nxt, reward = buffer["next", "observation"].numpy(), buffer["reward"].squeeze(-1).numpy()
    assert sawyer.rewards_match(nxt, reward, tasks)
    reward[0, 5] = -1.0 - reward[0, 5]  # 0 <-> -1
    assert not sawyer.rewards_match(nxt, reward, tasks)


def test_success_within_and_discounted_returns_by_hand():
    reward = np.array([[-1, -1, 0, -1, -1, -1, -1, -1.0]])  # two 4-step trajectories, one rewarded at step 2
    assert sawyer.success_within(reward, 4, 4)[0] == 0.5
    assert sawyer.success_within(reward, 4, 2)[0] == 0.0
    returns = sawyer.discounted_returns(torch.tensor(reward, dtype=torch.float32), 4, 0.5)
    expected = [-1 - 0.5 + 0 - 0.125, -1 + 0 - 0.25, 0 - 0.5, -1, -1 - 0.5 - 0.25 - 0.125, -1 - 0.5 - 0.25, -1.5, -1]
    np.testing.assert_allclose(returns[0].numpy(), expected)


def test_steps_to_success_and_successful_prefixes_by_hand():
    reward = np.array([[-1, -1, 0, 0, -1, -1, -1, -1.0]])  # trajectory 1 first rewarded at step 2, trajectory 2 never
    np.testing.assert_array_equal(sawyer.steps_to_success(reward, 4)[0], [2, 1, 0, -1] + [sawyer.NEVER] * 4)
    np.testing.assert_array_equal(sawyer.successful_prefixes(reward, 4)[0], [True, True, True, False] + [False] * 4)
    np.testing.assert_array_equal(sawyer.successful_prefixes(reward, 4, within=3)[0], [True, True, True, False] + [False] * 4)
    assert not sawyer.successful_prefixes(reward, 4, within=2).any()  # its first success is its 3rd step


def test_sawyer_data_replays_in_the_simulator_and_a_changed_action_is_caught(tmp_path):
    from smac_lightning.data.generate import generate_dataset
    from smac_lightning.envs import SawyerFamily

    family = SawyerFamily(num_train_tasks=1, num_test_tasks=1, data_horizon=20)
    ds = generate_dataset(family, tmp_path / "d", rl_size=20, encoder_size=20, seed=0, progress=False)
    rows = {key: ds.train_rl[key][0].numpy() for key in ("observation", "action", ("next", "observation"))}
    reward, task = ds.train_rl["reward"][0].squeeze(-1).numpy(), np.asarray(ds.train_tasks)[0]
    args = [rows["observation"], rows["action"], rows[("next", "observation")], reward]
    assert sawyer.replay_deviation(family, task, *args) == 0.0
    args[1] = args[1].copy()
    args[1][3, :3] = -np.sign(args[1][3, :3])  # at step 3 the hand moves the other way at full speed
    assert sawyer.replay_deviation(family, task, *args) > 0.01


def test_closest_approach_finds_where_a_passing_path_comes_nearest():
    hand = np.array([[[0.55, 0.0, 0.2], [0.50, -0.1, 0.12], [0.40, -0.2, 0.02]]])
    distance, step = sawyer.closest_approach(hand, np.array([[0.48, -0.12, 0.10]]))
    assert step[0] == 1
    np.testing.assert_allclose(distance[0], np.sqrt(3 * 0.02 ** 2))


def test_nearest_centroid_accuracy_reads_a_label_back_only_where_the_points_hold_it():
    points = np.array([[0.0], [0.1], [1.0], [1.1]])
    assert sawyer.nearest_centroid_accuracy(points, np.array([0, 0, 1, 1])) == 1.0
    # Alternating labels: each point's own class, without it, is centred on the far cluster
    # (e.g. for 0.0: class 0 is {1.0} at 1.0, class 1 is {0.1, 1.1} at 0.6), so every point is missed.
    assert sawyer.nearest_centroid_accuracy(points, np.array([0, 1, 0, 1])) == 0.0


def test_top_drawer_report_reads_the_handle_approach_the_gap_there_and_the_widest_opening(capsys):
    from tensordict import TensorDict

    from smac_lightning.envs.sawyer import scene as S

    everything = {name: True for name in S.OBJECTS}
    top = S.Scene(everything, 0, 0, 0, S.BEHAVIOURS.index("open_top_drawer"))
    move = S.Scene(everything, 0, 0, 0, S.BEHAVIOURS.index("move_hand"))
    obs = np.zeros((2, 3, S.OBS_DIM), np.float32)
    obs[0, :, :3] = [top.handle + [0.0, 0.0, 0.10], top.handle + [0.0, 0.03, 0.0], top.handle + [-0.05, 0.0, 0.0]]
    obs[0, :, S.OBS_SLICES["gap"].start] = [0.06, 0.01, 0.01]  # closed at the handle
    obs[0, :, S.OBS_SLICES["handle_drawer"]] = np.array([[0.0], [0.0], [0.05]])
    obs[1, :, S.OBS_SLICES["handle_drawer"]] = 0.3  # a move-hand episode is not reported
    episodes = TensorDict({"next": {"observation": torch.as_tensor(obs)}}, batch_size=[2, 3])
    sawyer.describe_top_drawer(episodes, np.stack([top.to_task(), move.to_task()]), np.array([False, True]))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert "closest 0.030 at step 1, finger gap there 0.010, widest opening 0.050" in out[0] and "success" not in out[0]


def test_adapted_success_is_split_by_whether_the_exploration_reached_success():
    explored = np.array([True, True, False, False, False])
    adapted = np.array([True, False, False, False, True])
    assert sawyer.explained_by_exploration(explored, adapted) == (
        "success 0.40 of 5; exploration reached success in 2, adapted success after it 0.50, adapted success without 0.33"
    )
    assert sawyer.explained_by_exploration(np.zeros(2, bool), np.ones(2, bool)).endswith("in 0, adapted success without 1.00")


def test_training_posteriors_give_each_exploration_lane_a_training_scenes_posterior():
    from types import SimpleNamespace

    from tensordict import TensorDict

    class Encoder:  # a scene's posterior mean: its rows' observation (each scene's rows hold its index)
        def posterior(self, rows):
            mean = rows["observation"][:, 0]
            return mean, torch.full_like(mean, 0.5)

    rows = TensorDict({"observation": torch.arange(5.0).view(5, 1, 1).expand(5, 300, 2)}, batch_size=[5, 300])
    picks = sawyer.training_posteriors(SimpleNamespace(encoder=Encoder()), SimpleNamespace(train_encoder=rows), lanes=7, trajectories=2, seed=3)
    assert len(picks) == 2 and all(mean.shape == (7, 2) for mean, _ in picks)
    for mean, var in picks:  # every lane's mean is one scene's (0..4), its variance that scene's
        assert set(mean[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0} and torch.equal(mean[:, 0], mean[:, 1])
        assert (var == 0.5).all()
    assert not torch.equal(picks[0][0], picks[1][0])  # the two trajectories draw their scenes apart
