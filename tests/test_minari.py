"""Minari round trip with the real package, and the one line bad Minari input gets."""

import json

import gymnasium as gym
import numpy as np
import pytest

from smac_lightning.data import DatasetError, load_dataset
from smac_lightning.data.minari_io import export_minari, import_minari

minari = pytest.importorskip("minari")


@pytest.fixture(autouse=True)
def _minari_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def test_a_dataset_goes_to_minari_and_comes_back_unchanged(dataset_dir, tmp_path):
    original = load_dataset(dataset_dir)
    ids = export_minari(original, "pr")
    assert ids == ["smac_lightning/pr/train-rl-v0", "smac_lightning/pr/train-encoder-v0", "smac_lightning/pr/test-encoder-v0"]
    exported = minari.load_dataset(ids[0])  # a Minari dataset like any other: episodes with the task in their infos
    episode = next(exported.iterate_episodes())
    assert episode.observations.shape[0] == len(episode.rewards) + 1 and episode.infos["task_index"][0] == 0
    np.testing.assert_allclose(episode.infos["task"][0], original.manifest["tasks"]["train"][0])
    back = import_minari("smac_lightning", "pr", tmp_path / "back")
    for name in ("train_rl", "train_encoder", "test_encoder"):
        assert (getattr(back, name) == getattr(original, name)).all(), name
    for key in ("family", "tasks", "sizes", "obs_dim", "act_dim", "behaviour_policy"):
        assert back.manifest[key] == original.manifest[key], key


def _foreign(dataset_id, description, obs_dim=2):
    from minari.data_collector import EpisodeBuffer

    episode = EpisodeBuffer(observations=np.zeros((4, obs_dim), np.float32), actions=np.zeros((3, 2), np.float32),
                            rewards=[0.0] * 3, terminations=[False] * 3, truncations=[False, False, True],
                            infos={"task_index": np.zeros(4, int)})
    minari.create_dataset_from_buffers(dataset_id, [episode], description=description,
                                       observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                                       action_space=gym.spaces.Box(-1, 1, (2,), np.float32))


def test_a_minari_dataset_without_task_information_is_named(tmp_path):
    for buffer in ("train-rl", "train-encoder", "test-encoder"):
        _foreign(f"other/ds/{buffer}-v0", "a dataset from elsewhere")
    with pytest.raises(DatasetError, match="other/ds/train-rl-v0: no task information"):
        import_minari("other", "ds", tmp_path / "x")


def test_a_minari_dataset_whose_spaces_do_not_match_its_manifest_is_named(tmp_path):
    manifest = {"family": {"name": "point_robot"}, "tasks": {"train": [[1.0, 0.0]], "test": [[0.0, 1.0]]},
                "sizes": {"rl": 3, "encoder": 3}, "obs_dim": 2, "act_dim": 2}
    for buffer in ("train-rl", "train-encoder", "test-encoder"):
        _foreign(f"other/wide/{buffer}-v0", json.dumps(manifest), obs_dim=3)
    with pytest.raises(DatasetError, match=r"other/wide/train-rl-v0: spaces .* do not match the manifest's obs_dim 2"):
        import_minari("other", "wide", tmp_path / "x")


def test_the_command_line_round_trip_and_its_usage(dataset_dir, tmp_path):
    from conftest import run_cli

    out = run_cli(tmp_path, "data", "export", str(dataset_dir), "--format", "minari")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"smac_lightning/{dataset_dir.name}/train-rl-v0" in out.stdout
    back = run_cli(tmp_path, "data", "import", f"smac_lightning/{dataset_dir.name}", "back")
    assert back.returncode == 0, back.stderr[-2000:]
    assert (load_dataset(tmp_path / "back").train_rl == load_dataset(dataset_dir).train_rl).all()
    wrong = run_cli(tmp_path, "data", "export", str(dataset_dir), "--format", "d4rl")
    assert wrong.returncode == 2 and "data export takes --format minari" in wrong.stderr
