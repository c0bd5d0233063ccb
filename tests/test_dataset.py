import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from smac_lightning.data import DatasetError, generate_dataset, load_dataset
from smac_lightning.data.dataset import write_manifest
from smac_lightning.envs import PointRobotFamily


def test_dataset_round_trips(tmp_path, family):
    made = generate_dataset(family, tmp_path / "ds", rl_size=30, encoder_size=20, seed=5, progress=False)
    loaded = load_dataset(tmp_path / "ds", family.config())
    for name in ("train_rl", "train_encoder", "test_encoder"):
        assert (getattr(made, name) == getattr(loaded, name)).all()
    assert loaded.train_rl.batch_size == (6, 30)
    assert loaded.test_encoder.batch_size == (3, 20)
    torch.testing.assert_close(loaded.train_tasks, torch.tensor(family.task_sets()[0], dtype=torch.float32))
    # row t of the buffers is task t, and rewards are the family's for that task
    assert (loaded.train_rl["task"].squeeze(-1) == torch.arange(6)[:, None]).all()
    goals = loaded.train_tasks[:, None, :]
    expected = -(loaded.train_rl["next", "observation"] - goals).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(loaded.train_rl["reward"], expected, atol=1e-5, rtol=0)
    assert loaded.manifest["behaviour_policy"]["name"] == "GoalSeeker"


def test_generation_is_reproducible(tmp_path, family):
    a = generate_dataset(family, tmp_path / "a", 30, 20, seed=5, progress=False)
    b = generate_dataset(family, tmp_path / "b", 30, 20, seed=5, progress=False)
    assert (a.train_rl == b.train_rl).all()


def _copy(dataset_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(dataset_dir, target)
    return target


def _rewrite(path, buffer, edit):
    """Replace one buffer of the dataset at ``path`` by ``edit(buffer)``, checksums renewed: a dataset
    written consistently but wrong, for the checks of content (the checksums catch any other change)."""
    td = TensorDict.load_memmap(path / buffer).clone()
    shutil.rmtree(path / buffer)
    edit(td).memmap(path / buffer)
    write_manifest(path, json.loads((path / "manifest.json").read_text()))


def test_wrong_path_is_named(tmp_path):
    with pytest.raises(DatasetError, match="no dataset directory here") as err:
        load_dataset(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)


def test_folder_without_manifest(tmp_path):
    with pytest.raises(DatasetError, match="manifest.json: manifest missing"):
        load_dataset(tmp_path)


def test_manifest_of_another_version(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format version 99"):
        load_dataset(path)


def test_corrupt_manifest(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(path)


def test_dataset_of_another_family(dataset_dir):
    other = PointRobotFamily(num_train_tasks=6, num_test_tasks=3, horizon=10, sparse=True)
    with pytest.raises(DatasetError, match="made for task family") as err:
        load_dataset(dataset_dir, other.config())
    assert "data.dataset_dir" in str(err.value)


def test_mismatched_shapes(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    _rewrite(path, "train/rl", lambda td: td.set("action", torch.zeros(*td.batch_size, 3)))  # the manifest says 2
    with pytest.raises(DatasetError, match=r"train/rl: field 'action' has shape \(6, 50, 3\)"):
        load_dataset(path)


def test_truncated_buffer(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    _rewrite(path, "train/encoder", lambda td: td[:, :10].clone())
    with pytest.raises(DatasetError, match="train/encoder: buffer has shape"):
        load_dataset(path)


def test_nan_rewards(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    td = TensorDict.load_memmap(path / "train/rl")
    td["reward"][2, 5] = float("nan")  # written through the memory map
    del td
    write_manifest(path, json.loads((path / "manifest.json").read_text()))  # written so, not corrupted
    with pytest.raises(DatasetError, match=r"field 'reward' has NaN or infinite values \(tasks \[2\]\)"):
        load_dataset(path)


def test_missing_field(dataset_dir, tmp_path):
    path = _copy(dataset_dir, tmp_path)
    _rewrite(path, "test/encoder", lambda td: td.exclude("reward"))
    with pytest.raises(DatasetError, match="test/encoder: field 'reward' missing"):
        load_dataset(path)


def test_complete_episode_returns_by_hand():
    from smac_lightning.data.summary import complete_episode_returns

    reward = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]]).unsqueeze(-1)
    terminated = torch.zeros(2, 5, 1, dtype=torch.bool)
    truncated = torch.zeros(2, 5, 1, dtype=torch.bool)
    truncated[0, 1] = truncated[0, 3] = True  # task 0: episodes [1, 2] and [3, 4]; row 4 is a cut episode
    terminated[1, 0] = True  # task 1: an episode of one step, then [1, 1, 1, 1] never ends
    buffer = TensorDict({"reward": reward, "terminated": terminated, "truncated": truncated}, batch_size=[2, 5])
    assert complete_episode_returns(buffer).tolist() == [3.0, 7.0, 1.0]


def _files(path):
    return sorted(f.relative_to(path) for f in path.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "ds"
    generate_dataset(PointRobotFamily(num_train_tasks=3, num_test_tasks=2, horizon=5), path, 10, 5, seed=1, progress=False)
    return path, load_dataset(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_gives_a_dataset_error_naming_the_file(tiny_dataset, tmp_path_factory, data):
    """Flip, overwrite or cut any byte of the manifest or a buffer file: the load either fails with a
    DatasetError that names the changed file, or (whitespace of the manifest) reads the same data."""
    source, original = tiny_dataset
    path = tmp_path_factory.mktemp("fuzz") / "ds"
    shutil.copytree(source, path)
    relative = data.draw(st.sampled_from(_files(path)))
    file = path / relative
    raw = bytearray(file.read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[where]))
    file.write_bytes(bytes(raw))
    try:
        loaded = load_dataset(path)
    except DatasetError as err:
        assert str(file) in str(err) or str(file.parent) in str(err), (relative, str(err))
        return
    assert loaded.manifest == original.manifest, relative
    for name in ("train_rl", "train_encoder", "test_encoder"):
        assert (getattr(loaded, name) == getattr(original, name)).all(), relative
