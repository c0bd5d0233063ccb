import lightning as L
import pytest
import torch
from tensordict import TensorDict

from smac_lightning.data import DatasetError, MultiTaskReplay, OfflineMetaDataModule
from smac_lightning.data.episodes import episode_ends, episode_return, until_first_success


def _offline(num_tasks=3, size=5):
    t = torch.arange(num_tasks).view(-1, 1, 1).expand(num_tasks, size, 1)
    i = torch.arange(size).view(1, -1, 1).expand(num_tasks, size, 1)
    return TensorDict(
        {
            "observation": torch.cat([t, i], -1).float(),
            "action": torch.zeros(num_tasks, size, 2),
            "reward": (10 * t + i).float(),
            "terminated": torch.zeros(num_tasks, size, 1, dtype=torch.bool),
            "truncated": torch.zeros(num_tasks, size, 1, dtype=torch.bool),
            "next": {"observation": torch.zeros(num_tasks, size, 2)},
            "task": t.clone(),
        },
        batch_size=[num_tasks, size],
    )


def _online_rows(task, k, reward):
    rows = _offline(1, k)[0]
    rows["task"].fill_(task)
    rows["reward"].fill_(reward)
    rows["generated"] = torch.ones(k, 1, dtype=torch.bool)
    return rows


def test_sample_draws_each_row_from_its_own_task():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    tasks = torch.tensor([2, 0])
    batch = replay.sample(tasks, 50, torch.Generator().manual_seed(0))
    assert batch.batch_size == (2, 50)
    assert (batch["task"].squeeze(-1) == tasks[:, None]).all()
    assert not batch["generated"].any()
    assert set(batch["observation"][0, :, 1].long().tolist()) == set(range(5))  # all rows reachable


def test_online_rows_are_appended_flagged_and_sampled():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    replay.extend(1, _online_rows(1, 3, reward=-7.0))
    assert replay.sizes.tolist() == [5, 8, 5]
    batch = replay.sample(torch.tensor([1]), 400)
    generated = batch["generated"].squeeze(-1)
    assert generated.any() and (~generated).any()
    assert (batch["reward"][generated] == -7.0).all()
    offline = replay.sample(torch.tensor([1]), 400, offline_only=True)
    assert not offline["generated"].any()


def test_online_only_draws_a_tasks_online_rows_once_it_has_some():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    replay.extend(1, _online_rows(1, 3, reward=-7.0))
    rows = replay.draw(torch.tensor([1, 0]), 200, torch.Generator().manual_seed(0), online_only=True)
    assert set(rows[0].tolist()) == {5, 6, 7}  # task 1: its three online rows, never an offline one
    assert set(rows[1].tolist()) == set(range(5))  # task 0 has none yet: all its rows
    replay.extend(0, _online_rows(0, 1, reward=-3.0))
    assert set(replay.draw(torch.tensor([0]), 50, online_only=True)[0].tolist()) == {5}


def test_online_ring_overwrites_only_online_rows():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    replay.extend(0, _online_rows(0, 3, reward=1.0))
    replay.extend(0, _online_rows(0, 3, reward=2.0))
    assert replay.sizes[0] == 9
    rewards = replay.storage["reward"][0].squeeze(-1)
    assert rewards[:5].tolist() == [0, 1, 2, 3, 4]  # offline rows untouched
    assert rewards[5:].tolist() == [2.0, 2.0, 1.0, 2.0]  # the oldest online rows overwritten


def test_replace_makes_the_new_rows_the_whole_sampled_history():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    replay.extend(1, _online_rows(1, 3, reward=1.0))
    replay.extend(1, _online_rows(1, 2, reward=2.0), replace=True)
    batch = replay.sample(torch.tensor([1, 0]), 300)
    assert (batch["reward"][0] == 2.0).all()  # only the replacing rows
    assert set(batch["reward"][1].squeeze(-1).tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}  # task 0 untouched
    offline = replay.sample(torch.tensor([1]), 300, offline_only=True)
    assert not offline["generated"].any()


def test_more_rows_than_the_online_capacity_keep_the_newest():
    replay = MultiTaskReplay(_offline(num_tasks=1), online_capacity=2)
    rows = _online_rows(0, 3, reward=0.0)
    rows["reward"] = torch.tensor([[1.0], [2.0], [3.0]])
    replay.extend(0, rows)
    assert replay.written[0] == 3 and replay.sizes[0] == 5 + 2
    assert replay.window("last", 2)["reward"][0].flatten().tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="no online capacity"):
        MultiTaskReplay(_offline(), online_capacity=0).extend(0, rows)


def test_state_dict_round_trips_online_data():
    replay = MultiTaskReplay(_offline(), online_capacity=4)
    replay.extend(2, _online_rows(2, 2, reward=3.0), replace=True)
    fresh = MultiTaskReplay(_offline(), online_capacity=4)
    fresh.load_state_dict(replay.state_dict())
    assert (fresh.storage == replay.storage).all()
    assert fresh.sizes.tolist() == replay.sizes.tolist()
    assert fresh.start.tolist() == [0, 0, 5]


def _loaded(dm):
    dm.setup("fit")
    return dm


def test_constructing_the_datamodule_makes_and_loads_nothing_prepare_data_makes_setup_loads(family, tmp_path):
    path = tmp_path / "made"
    dm = OfflineMetaDataModule(family, str(path), 20, 10, batch_size=4, context_size=3)
    assert not path.exists() and dm.dataset is None and (dm.obs_dim, dm.act_dim) == (2, 2)
    with pytest.raises(DatasetError, match="no dataset at .*data make"):
        dm.setup("fit")
    dm.prepare_data()
    made = (path / "manifest.json").stat().st_mtime_ns
    dm.prepare_data()  # a second call leaves it alone
    assert (path / "manifest.json").stat().st_mtime_ns == made
    dm.setup("fit")
    replay = dm.rl
    dm.setup("validate")  # later stages keep the replays (and their online rows)
    assert dm.rl is replay and dm.dataset.manifest["sizes"] == {"rl": 20, "encoder": 10}


def test_datamodule_meta_batches(family, dataset_dir):
    dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, meta_batch=4, batch_size=8, context_size=5))
    batch = next(iter(dm.train_dataloader()))
    assert batch["rl"].batch_size == (4, 8) and batch["context"].batch_size == (4, 5)
    assert (batch["rl"]["task"].squeeze(-1) == batch["task"][:, None]).all()
    assert (batch["context"]["task"].squeeze(-1) == batch["task"][:, None]).all()
    torch.testing.assert_close(batch["task_description"], dm.train_tasks[batch["task"]].float())
    assert dm.obs_dim == 2 and dm.act_dim == 2


def test_meta_batches_follow_the_runs_seed_unless_given_one(family, dataset_dir, monkeypatch):
    def first_batch(**seed):
        dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, meta_batch=4, batch_size=8, context_size=5, **seed))
        return dm.seed, next(iter(dm.train_dataloader()))["rl"]["observation"]

    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # so that teardown restores the variable as it was
    monkeypatch.delenv("PL_GLOBAL_SEED")
    seed, unseeded = first_batch()
    assert seed == 0
    L.seed_everything(3)  # what --seed_everything 3 does before the data module is built
    seed, three = first_batch()
    assert seed == 3 and not torch.equal(three, unseeded)  # another seed draws other meta-batches
    seed, given = first_batch(seed=0)
    assert seed == 0 and torch.equal(given, unseeded)  # a seed given to the data module wins


def test_meta_batch_tasks_are_drawn_with_replacement(family, dataset_dir):
    dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, meta_batch=9, batch_size=8, context_size=5))
    tasks = dm.sample_meta_batch(torch.Generator().manual_seed(0))["task"]
    assert len(tasks) == 9 and len(set(tasks.tolist())) < 9  # more draws than the 6 tasks: repeats


def test_stacked_meta_batches_are_the_single_draws_of_their_generators(family, dataset_dir):
    dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, meta_batch=3, batch_size=8, context_size=5))
    generators = lambda: [torch.Generator().manual_seed(seed) for seed in (4, 5, 6)]  # noqa: E731
    stacked = dm.sample_meta_batches(generators(), 7)
    assert stacked.batch_size == (3, 3) and stacked["rl"].batch_size == (3, 3, 7)
    for one, generator in zip(stacked.unbind(0), generators()):
        assert (one == dm.sample_meta_batch(generator, 7)).all()


def test_rl_batch_grows_at_the_phase_switch_and_contexts_come_from_the_rl_buffer(family, dataset_dir):
    dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, batch_size=8, online_batch_size=12, context_size=5))
    assert dm.encoder is dm.rl  # the authors' default: the encoder buffer is the RL buffer
    dm.online_from_batch = 3
    sizes = [batch["rl"].batch_size[1] for batch, _ in zip(dm.train_dataloader(), range(5))]
    assert sizes == [8, 8, 8, 12, 12]
    separate = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, encoder_buffer="separate"))
    assert separate.encoder is not separate.rl and separate.encoder.offline_size == 30


def test_online_contexts_start_at_the_phase_switch_and_leave_the_rl_rows_alone(family, dataset_dir):
    dm = _loaded(OfflineMetaDataModule(family, str(dataset_dir), 50, 30, batch_size=8, context_size=40))
    for task in range(dm.num_train_tasks):
        dm.rl.extend(task, _online_rows(task, 2, reward=-7.0))
    dm.online_from_batch, dm.online_contexts = 2, True
    batches = [batch for batch, _ in zip(dm.train_dataloader(), range(4))]
    for k, batch in enumerate(batches):
        generated = batch["context"]["generated"]
        assert generated.all() if k >= 2 else not generated.all()  # 40 rows of 52: some offline ones before
        assert not batch["rl"]["generated"].all()  # the RL rows still come from the whole buffer
    dm.online_contexts = False
    assert not next(iter(dm.train_dataloader()))["context"]["generated"].all()


def test_windows_are_the_first_or_last_rows_in_the_order_written():
    replay = MultiTaskReplay.empty(num_tasks=2, capacity=4, obs_dim=2, act_dim=2)
    for reward in range(3):  # task 0 gets rows 0, 1, 2; task 1 gets rows 0..5 (wrapping the ring of 4)
        replay.extend(0, _online_rows(0, 1, reward=float(reward)))
    replay.extend(1, _online_rows(1, 3, reward=0.0))
    replay.extend(1, _online_rows(1, 3, reward=1.0))
    replay.storage["reward"][1, :, 0] = torch.tensor([4.0, 5.0, 2.0, 3.0])  # slot = row % 4, rows 2..5
    last = replay.window("last", 2)
    assert last["reward"].squeeze(-1).tolist() == [[1.0, 2.0], [4.0, 5.0]]
    with pytest.raises(ValueError, match="overwritten"):
        replay.window("first", 2)  # task 1's rows 0 and 1 are gone
    with pytest.raises(ValueError, match="fewer than 4"):
        replay.window("last", 4)


def test_first_window_of_an_unwrapped_replay():
    replay = MultiTaskReplay.empty(num_tasks=1, capacity=10, obs_dim=2, act_dim=2)
    for reward in range(5):
        replay.extend(0, _online_rows(0, 1, reward=float(reward)))
    assert replay.window("first", 3)["reward"].flatten().tolist() == [0.0, 1.0, 2.0]
    assert replay.window("last", 3)["reward"].flatten().tolist() == [2.0, 3.0, 4.0]


def test_rows_until_the_first_success_by_hand():
    # three 4-row episodes end to end, then an open one: success (reward >= -0.5) at rows 1, 2 / none / 0, 3 / 0
    reward = torch.tensor([-1, 0, 0, -1, -1, -1, -1, -1, 0, -1, -1, 0, 0.0]).view(1, -1, 1)
    end = torch.zeros(1, 13, 1, dtype=torch.bool)
    end[0, [3, 7, 11]] = True
    marks = until_first_success(reward, end, -0.5).view(-1).int().tolist()
    assert marks == [1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1]


def test_an_annotated_replay_annotates_its_offline_rows_and_every_extension():
    offline = _offline(num_tasks=2, size=6)
    offline["reward"] = torch.tensor([[-1, 0, -1, -1, -1, -1], [0, 0, -1, -1, 0, -1.0]]).unsqueeze(-1)
    offline["truncated"][:, [2, 5]] = True  # two 3-row episodes per task
    replay = MultiTaskReplay(offline, online_capacity=4)
    replay.annotate("before_success", lambda rows: until_first_success(rows["reward"], episode_ends(rows), -0.5))
    assert replay.storage["before_success"][:, :6].squeeze(-1).int().tolist() == [[1, 1, 0, 1, 1, 1], [1, 0, 0, 1, 1, 0]]
    rows = _online_rows(task=1, k=4, reward=-1.0)
    rows["reward"][1] = -0.3  # a decoder's label near success
    rows["truncated"][3] = True
    replay.extend(1, rows)
    assert replay.storage["before_success"][1, 6:].squeeze(-1).int().tolist() == [1, 1, 0, 0]
    assert "before_success" not in rows.keys()  # the caller's rows are left as they were


def test_episode_returns_by_hand():
    reward = torch.tensor([[-1, 0, 2, -1, -1, 4.0]]).unsqueeze(-1)
    end = torch.zeros(1, 6, 1, dtype=torch.bool)
    end[0, [1, 4]] = True  # episodes of 2 and 3 rows, then one open row
    g = 0.5
    expected = [-1 + g * 0, -1 + g * 0, 2 - g - g * g, 2 - g - g * g, 2 - g - g * g, 4.0]
    torch.testing.assert_close(episode_return(reward, end, g).view(-1), torch.tensor(expected))
