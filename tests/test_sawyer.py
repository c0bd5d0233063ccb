"""Sawyer Manipulation: behaviours reachable by the script, reward and state layout, scenes, seeds, data."""

import mlflow
import numpy as np
import pybullet as pb
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from tensordict import TensorDict

from conftest import ROOT, run_cli
from smac_lightning.data.dataset import load_dataset
from smac_lightning.data.generate import generate_dataset
from smac_lightning.envs import PointRobotFamily, SawyerEnv, SawyerFamily
from smac_lightning.envs.sawyer import scene as S
from smac_lightning.envs.sawyer.scripted import ScriptedSawyer, behaviour_script
from smac_lightning.errors import ConfigError, DatasetError
from smac_lightning.rollout import MetaTester, MetaTestProtocol

EVERYTHING = {name: True for name in S.OBJECTS}


def scripted_episode(scene: S.Scene, steps: int = 75, seed: int = 0):
    """Run the script of the scene's own behaviour; returns the env and the per-step rewards."""
    env = SawyerEnv(scene.to_task(), horizon=steps)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    controller = ScriptedSawyer(rng)
    controller.reset(scene.to_task()[None])
    controller._plans[0].waypoints = behaviour_script(S.BEHAVIOURS[scene.behaviour], scene, obs)
    rewards = []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(controller.act(obs[None])[0])
        rewards.append(reward)
        if not controller._plans[0].waypoints or truncated:
            break
    return env, np.array(rewards)


@pytest.mark.parametrize("behaviour", range(len(S.BEHAVIOURS)))
@pytest.mark.parametrize("side", [0, 1])
def test_every_behaviour_is_achieved_by_its_script(behaviour, side):
    trays, objects = S.slot_choices(EVERYTHING, side)  # where the family puts them in a drawer scene
    scene = S.Scene(EVERYTHING, side, tray_slot=trays[-1], object_slot=objects[0], behaviour=behaviour)
    env, rewards = scripted_episode(scene)
    assert (rewards == 0).any(), f"{S.BEHAVIOURS[behaviour]} never achieved on side {side}"
    assert set(np.unique(rewards)) <= {0.0, -1.0}
    env.close()


def _drawer_opening(env: SawyerEnv, name: str) -> float:
    """How far the drawer link has slid toward the robot, from its world position (not its joint state)."""
    body = env.bodies[name]
    x_closed = pb.getBasePositionAndOrientation(body, physicsClientId=env.client)[0][0]
    x_now = pb.getLinkState(body, 0, computeForwardKinematics=True, physicsClientId=env.client)[4][0]
    return x_closed - x_now


def test_state_layout_and_reward_follow_the_simulator():
    scene = S.Scene(EVERYTHING, 1, 2, 1, S.BEHAVIOURS.index("open_top_drawer"))
    env = SawyerEnv(scene.to_task())
    obs, _ = env.reset(seed=0)
    plan = behaviour_script("open_top_drawer", scene, obs)
    controller = ScriptedSawyer(np.random.default_rng(0), noise=0.0)
    controller.reset(scene.to_task()[None])
    controller._plans[0].waypoints = plan
    c = env.client
    saw_open = saw_closed = False
    for _ in range(40):
        obs, reward, *_ = env.step(controller.act(obs[None])[0])
        hand = pb.getLinkState(env.robot, env.ee, computeForwardKinematics=True, physicsClientId=c)[4]
        cube = pb.getBasePositionAndOrientation(env.bodies["object"], physicsClientId=c)[0]
        opening = _drawer_opening(env, "handle_drawer")
        np.testing.assert_allclose(obs[0:3], hand, atol=1e-5)
        np.testing.assert_allclose(obs[4:7], cube, atol=1e-5)
        np.testing.assert_allclose(obs[7:10], [*S.TRAY_SLOTS[2], 0.0], atol=1e-6)
        np.testing.assert_allclose(obs[11], opening, atol=1e-4)
        assert reward == (0.0 if opening > S.OPEN else -1.0)
        saw_open |= reward == 0.0
        saw_closed |= reward == -1.0
    assert saw_open and saw_closed
    env.close()


@pytest.mark.parametrize("side", [0, 1])
def test_the_hand_starts_on_the_side_away_from_the_drawers(side):
    for present in (EVERYTHING, {name: False for name in S.OBJECTS}):  # the side is the scene's even without a cabinet
        scene = S.Scene(present, side, 0, 0, 0)
        env = SawyerEnv(scene.to_task())
        obs, _ = env.reset(seed=0)
        hand = obs[S.OBS_SLICES["hand"]]
        np.testing.assert_allclose(hand, scene.hand_start, atol=0.01)
        assert np.sign(hand[1]) == -np.sign(scene.handle[1]) and abs(hand[1]) > 0.1
        env.step(np.array([0.0, 1.0 - 2 * side, 0.0, -1.0], np.float32))  # towards the drawers
        np.testing.assert_allclose(env.reset(seed=1)[0], obs)  # every episode starts there
        env.close()


def test_in_a_drawer_scene_the_object_and_the_tray_stand_away_from_the_drawers():
    scenes = [S.Scene.from_task(t) for t in S.sample_scenes(300, seed=2)]
    simulated = 0
    for scene in scenes:
        away = -np.sign(scene.handle[1])
        any_drawer = scene.present["handle_drawer"] or scene.present["button_drawer"]
        if any_drawer:
            assert np.sign(scene.object_start[1]) == away and abs(scene.object_start[1]) == 0.15
        if scene.present["button_drawer"]:
            assert np.sign(scene.tray[1]) == away
        if any_drawer and scene.present["object"] and scene.present["tray"] and simulated < 6:
            obs, _ = (env := SawyerEnv(scene.to_task())).reset(seed=0)
            env.close()
            assert np.sign(obs[S.OBS_SLICES["object"]][1]) == away  # the state tells the side at every step
            assert (np.sign(obs[S.OBS_SLICES["tray"]][1]) == away) or not scene.present["button_drawer"]
            simulated += 1
    assert simulated == 6
    # Without a drawer both stand anywhere.
    free = [s for s in scenes if not (s.present["handle_drawer"] or s.present["button_drawer"])]
    assert {s.object_slot for s in free} == set(range(4)) and {s.tray_slot for s in free} == set(range(4))


def test_absent_objects_read_zero_and_the_action_is_clipped_to_the_workspace():
    nothing = S.Scene({name: False for name in S.OBJECTS}, 0, 0, 0, 0)
    env = SawyerEnv(nothing.to_task())
    obs, _ = env.reset(seed=0)
    for _ in range(25):  # push far past every wall of the box
        obs, *_ = env.step(np.array([1.0, 1.0, -1.0, 1.0], np.float32))
    assert np.all(obs[4:] == 0.0)
    assert np.all(obs[:3] <= S.WORKSPACE[1] + 0.01) and np.all(obs[:3] >= S.WORKSPACE[0] - 0.01)
    np.testing.assert_allclose(obs[[0, 1]], S.WORKSPACE[1][:2], atol=0.01)
    assert obs[3] < 0.005  # the gripper closed
    env.close()


@pytest.mark.parametrize("num_behaviours", [3, 8])
def test_scene_sampling_covers_every_option_and_only_feasible_behaviours(num_behaviours):
    tasks = S.sample_scenes(600, seed=0, num_behaviours=num_behaviours)
    scenes = [S.Scene.from_task(t) for t in tasks]
    for name in S.OBJECTS:
        assert {s.present[name] for s in scenes} == {False, True}
    assert {s.side for s in scenes} == {0, 1}
    assert {s.tray_slot for s in scenes} == set(range(4)) and {s.object_slot for s in scenes} == set(range(4))
    assert {s.behaviour for s in scenes} == set(range(num_behaviours))
    for s in scenes:
        assert s.behaviour in S.feasible(s.present, num_behaviours)
    np.testing.assert_array_equal(tasks, S.sample_scenes(600, seed=0, num_behaviours=num_behaviours))


def test_objects_stand_with_the_family_probability():
    scenes = [S.Scene.from_task(t) for t in S.sample_scenes(4000, seed=0)]
    for name in S.OBJECTS:
        assert abs(np.mean([s.present[name] for s in scenes]) - 0.75) < 0.02
    empty = [S.Scene.from_task(t) for t in SawyerFamily(object_probability=0.0).sample_tasks(50, seed=0)]
    assert not any(any(s.present.values()) for s in empty)
    assert {s.behaviour for s in empty} == {S.BEHAVIOURS.index("move_hand")}


@pytest.mark.parametrize("side", [0, 1])
def test_scripted_move_hand_reaches_the_goal_and_holds_it_to_the_end(side):
    scene = S.Scene(EVERYTHING, side, 0, 3, S.BEHAVIOURS.index("move_hand"))
    env = SawyerEnv(scene.to_task(), horizon=75)
    obs, _ = env.reset(seed=side)
    controller = ScriptedSawyer(np.random.default_rng(side))
    controller.reset(scene.to_task()[None])
    controller._plans[0].waypoints = behaviour_script("move_hand", scene, obs)
    rewards, actions = [], []
    for _ in range(75):
        actions.append(controller.act(obs[None])[0])
        obs, reward, *_ = env.step(actions[-1])
        rewards.append(reward)
    first = rewards.index(0.0)
    assert first < 15 and all(r == 0.0 for r in rewards[first:])  # it never leaves: the rest of the trajectory is rewarded
    assert np.linalg.norm(obs[S.OBS_SLICES["hand"]] - S.HAND_GOAL) < 0.03
    gripper = np.array(actions)[:, 3]
    assert gripper.max() < 0 and 0.2 < np.mean(gripper > -1.0) < 0.8  # open, with noise, clipped at -1 about half the time
    env.close()


def _object_moved_by_the_controller(num_behaviours: int) -> bool:
    """Whether the controller moves the object in any of four 150-step trajectories of a move-hand scene."""
    scene = S.Scene(EVERYTHING, 0, 1, 2, S.BEHAVIOURS.index("move_hand"))
    env = SawyerEnv(scene.to_task(), horizon=150)
    controller = ScriptedSawyer(np.random.default_rng(0), num_behaviours=num_behaviours)
    moved = False
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        controller.reset(scene.to_task()[None])
        for _ in range(150):
            obs, *_ = env.step(controller.act(obs[None])[0])
            moved |= bool(np.linalg.norm(obs[S.OBS_SLICES["object"]] - scene.object_start) > 0.02)
    env.close()
    return moved


def test_the_data_performs_every_behaviour_the_scene_allows_whatever_the_family_rewards():
    family = SawyerFamily(behaviours=3)
    assert family.behaviour_policy(np.random.default_rng(0)).num_behaviours == len(S.BEHAVIOURS)
    assert _object_moved_by_the_controller(len(S.BEHAVIOURS))  # grasps, lifts or carries the object
    assert not _object_moved_by_the_controller(3)  # hand and drawers only: the object stays put


def test_a_bottom_drawer_without_the_button_is_never_the_desired_behaviour():
    present = {**EVERYTHING, "button": False}
    assert S.BEHAVIOURS.index("open_bottom_drawer") not in S.feasible(present, 8)
    assert S.BEHAVIOURS.index("open_both_drawers") not in S.feasible(present, 8)


def test_seeded_runs_repeat_exactly_and_reset_undoes_a_grasp():
    scene = S.Scene(EVERYTHING, 0, 0, 2, S.BEHAVIOURS.index("lift_object"))
    first, rewards = scripted_episode(scene, steps=20)
    obs_first = first._observation()
    assert first._grasp is not None  # holding the cube after 20 steps
    second, rewards_again = scripted_episode(scene, steps=20)
    np.testing.assert_array_equal(second._observation(), obs_first)
    np.testing.assert_array_equal(rewards_again, rewards)
    start, _ = first.reset(seed=0)
    np.testing.assert_allclose(start[4:7], scene.object_start, atol=1e-3)
    assert first._grasp is None
    first.close(), second.close()


def test_env_passes_gymnasiums_checker():
    env = SawyerEnv(S.sample_scenes(1, seed=3)[0])
    check_env(env, skip_render_check=True)
    env.close()


def test_dataset_is_one_buffer_with_its_success_rate_and_pictures(tmp_path):
    family = SawyerFamily(num_train_tasks=3, num_test_tasks=2, data_horizon=40)
    ds = generate_dataset(family, tmp_path / "d", rl_size=80, encoder_size=40, seed=0, progress=False)
    assert tuple(ds.train_encoder.batch_size) == (3, 40) and tuple(ds.train_rl.batch_size) == (3, 80)
    for key in ("observation", "action", "reward"):
        np.testing.assert_array_equal(ds.train_encoder[key].numpy(), ds.train_rl[:, :40][key].numpy())
    rewards = ds.train_rl["reward"].squeeze(-1).reshape(3, 2, 40).numpy()
    expected = round(float((rewards == 0).any(-1).mean()), 4)
    assert ds.manifest["success_rate"]["train/rl"] == expected
    assert ds.manifest["family"]["data_horizon"] == 40
    with pytest.raises(DatasetError, match="made for task family"):  # data of an earlier version of the env
        load_dataset(tmp_path / "d", {**family.config(), "version": family.version - 1})
    assert len(list((tmp_path / "d/previews/train").glob("scene*.png"))) == 3
    assert len(list((tmp_path / "d/previews/test").glob("scene*.png"))) == 2
    again = generate_dataset(family, tmp_path / "e", rl_size=80, encoder_size=40, seed=0, progress=False)
    np.testing.assert_array_equal(again.train_rl["action"].numpy(), ds.train_rl["action"].numpy())


def test_meta_test_success_counts_episodes_that_reach_the_success_reward_on_a_valid_step():
    family = SawyerFamily(num_train_tasks=1, num_test_tasks=1)
    tester = MetaTester(family, MetaTestProtocol(runs_per_task=1))
    reward = torch.tensor([[-1.0, 0.0, -1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]).unsqueeze(-1)
    valid = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])  # the 3rd ended early
    episodes = TensorDict({"reward": reward, "valid": valid}, batch_size=[3, 3])
    tasks = np.zeros((3, S.TASK_DIM))
    tasks[:, S.BEHAVIOUR] = [0, 0, 2]  # move the hand twice (one success), the bottom drawer once (none)
    success = tester._success(episodes, tasks, "final_success")
    assert success == pytest.approx({"final_success": 1 / 3, "final_success/move_hand": 1 / 2, "final_success/open_bottom_drawer": 0.0})
    assert tester.task_counts(tasks)["final_success/move_hand"] == 2
    assert tester.task_counts(tasks)["final_success_offline_context/open_top_drawer"] == 0
    assert tester.task_counts(tasks)["exploration_success/open_bottom_drawer"] == 1
    names = tester.metric_names()
    assert "final_success" in names and "final_success_offline_context" in names and "exploration_success/move_hand" in names
    assert "exploration_success" in tester.metric_names(offline_context=False)  # the agent's own exploration: always there
    assert {f"final_success/{b}" for b in S.BEHAVIOURS[:3]} <= set(names) and "final_success/lift_object" not in names
    dense = MetaTester(PointRobotFamily(num_train_tasks=1, num_test_tasks=1), MetaTestProtocol())
    assert not any("success" in name for name in dense.metric_names())


def test_bad_family_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="behaviours must be 3 or 8"):
        SawyerFamily(behaviours=5)
    with pytest.raises(ConfigError, match="object_probability must be in"):
        SawyerFamily(object_probability=1.5)
    with pytest.raises(ConfigError, match="must not exceed data.rl_size"):
        generate_dataset(SawyerFamily(num_train_tasks=2, num_test_tasks=1), tmp_path / "x", rl_size=10, encoder_size=20, progress=False)


def test_data_make_logs_the_scene_pictures_to_mlflow(tmp_path):
    out = run_cli(
        tmp_path, "data", "make", "--config", str(ROOT / "conf/sawyer.yaml"), "--config", str(ROOT / "conf/smoke.yaml"),
        "--data.family.init_args.num_train_tasks", "4", "--data.family.init_args.num_test_tasks", "2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scripted trajectories achieving the rewarded behaviour" in out.stdout
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["smac_lightning"], output_format="list")
    logged = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path="previews/train")}
    assert len(logged) == 4 and all(path.endswith(".png") for path in logged)
