import json

import pytest
import torch

from smac_lightning.data import load_dataset
from smac_lightning.errors import ConfigError

from helpers import PEARL_SMOKE, ROOT, pearl_cli, smoke_cli


def test_encoder_learns_from_the_critic_and_kl_only(tmp_path):
    made = pearl_cli(tmp_path)
    module, dm = made.model, made.datamodule
    dm.rl = dm.encoder = _filled(dm)
    batch = dm.sample_meta_batch()
    losses = module.compute_losses(batch["context"], batch["rl"])
    encoder = list(module.encoder.parameters())
    for name in ("critic_loss", "kl"):
        grads = torch.autograd.grad(losses[name], encoder, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    for name in ("actor_loss", "alpha_loss"):
        grads = torch.autograd.grad(losses[name], encoder, retain_graph=True, allow_unused=True)
        assert all(g is None for g in grads), name
    to_critic = torch.autograd.grad(losses["actor_loss"], list(module.critic.parameters()), retain_graph=True, allow_unused=True)
    assert all(g is None for g in to_critic)  # the actor's Q runs on detached critic weights
    (to_alpha,) = torch.autograd.grad(losses["alpha_loss"], [module.log_alpha], retain_graph=True)
    assert to_alpha.abs() > 0


def _filled(dm):
    """A replay with one stored row per slot, so that a meta-batch can be drawn before any collection."""
    from smac_lightning.data import MultiTaskReplay

    replay = MultiTaskReplay.empty(dm.num_train_tasks, 8, dm.obs_dim, dm.act_dim)
    for task in range(dm.num_train_tasks):
        rows = replay.storage[task, :8].clone()
        rows["observation"].normal_()
        rows["reward"].normal_()
        rows["task"].fill_(task)
        replay.extend(task, rows)
    return replay


@pytest.fixture(scope="module")
def pearl_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pearl")
    export = tmp_path / "exported"
    made = pearl_cli(
        tmp_path,
        "--model.export.path", str(export), "--model.export.iteration", "2",
        "--model.export.rl_size", "40", "--model.export.encoder_size", "20",
    )
    made.trainer.fit(made.model, made.datamodule)
    return made, export, tmp_path


def test_pearl_collects_what_the_config_says(pearl_run):
    made, _, _ = pearl_run
    module, dm = made.model, made.datamodule
    assert module.updates == 60 and module.iterations_collected == 3
    # 40 tasks x 2 initial episodes, then 3 iterations of 2 tasks x (1 prior + 1 posterior) episodes; 20 steps each
    assert module.env_steps == 40 * 2 * 20 + 3 * 2 * 2 * 20
    assert int(dm.rl.written.sum()) == module.env_steps
    # encoder replays: the 40 initial rows, or, for the 2 tasks each of the 4 draws picked (iteration 0
    # draws after the initial collection), only that draw's 20-step exploration
    sampled = dm.encoder.written == 20
    assert 2 <= int(sampled.sum()) <= 8 and (dm.encoder.written[~sampled] == 40).all()
    assert not dm.rl.online_rows()["generated"].any()  # ground-truth rewards


def test_exported_dataset_holds_exactly_the_requested_windows(pearl_run):
    made, export, _ = pearl_run
    dataset = load_dataset(export, made.datamodule.family.config())
    assert dataset.manifest["behaviour_policy"]["name"] == "PEARL"
    assert dataset.manifest["behaviour_policy"]["iteration"] == 2 and dataset.manifest["behaviour_policy"]["updates"] == 40
    assert tuple(dataset.train_rl.batch_size) == (40, 40) and tuple(dataset.train_encoder.batch_size) == (40, 20)
    assert tuple(dataset.test_encoder.batch_size) == (10, 20)
    rl = made.datamodule.rl.storage  # ring of 400 rows: nothing overwritten, slot = row number
    torch.testing.assert_close(dataset.train_rl["observation"], rl["observation"][:, :40])  # the first 40 rows
    assert (dataset.train_rl["task"].squeeze(-1) == torch.arange(40)[:, None]).all()
    # consecutive rows are consecutive steps, except across the episode boundary at row 20
    continues = (dataset.train_rl["next", "observation"][:, :-1] == dataset.train_rl["observation"][:, 1:]).all(-1)
    assert continues[:, :19].all() and continues[:, 20:].all()


def test_exported_encoder_rows_are_the_newest_exploration(pearl_run):
    made, export, _ = pearl_run
    dataset = load_dataset(export, made.datamodule.family.config())
    encoder = made.datamodule.encoder
    exported, stored = dataset.train_encoder["observation"], encoder.storage["observation"]
    never_drawn = encoder.written == 40
    torch.testing.assert_close(exported[never_drawn], stored[never_drawn, 20:40])  # the last 20 of the initial 40
    # drawn tasks hold one 20-step exploration; only iteration 3 (after the export) changed up to 2 of them
    same = (exported[~never_drawn] == stored[~never_drawn, :20]).flatten(1).all(-1)
    assert int((~same).sum()) <= 2


def test_pearl_run_is_logged_and_checkpointed(pearl_run):
    import mlflow

    _, _, tmp_path = pearl_run
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("smac_lightning").experiment_id])
    for key in ("eval/test/final_return", "train/alpha", "train/critic_loss", "progress/env_steps"):
        assert key in run.data.metrics, key
    assert "eval/test/kl_offline_paper" not in run.data.metrics  # no offline data to condition on
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    assert torch.load(last, weights_only=False)["pearl"]["iterations_collected"] == 3


def test_export_to_an_existing_folder_is_refused_before_training(tmp_path):
    (tmp_path / "x").mkdir()
    made = pearl_cli(tmp_path, "--model.export.path", str(tmp_path / "x"), "--model.export.iteration", "1")
    with pytest.raises(ConfigError, match="exists already"):
        made.trainer.fit(made.model, made.datamodule)
    assert made.model.updates == 0


def test_export_that_cannot_be_met_is_explained(tmp_path):
    made = pearl_cli(
        tmp_path, "--model.export.path", str(tmp_path / "x"), "--model.export.iteration", "1", "--model.export.rl_size", "300"
    )
    with pytest.raises(ConfigError, match="fewer than 300"):
        made.trainer.fit(made.model, made.datamodule)


def test_smac_generates_its_dataset_with_pearl_and_keeps_its_random_stream(tmp_path):
    pearl = [
        "--data.pearl.config", "conf/pearl/point_robot.yaml", "--data.pearl.iteration", "1",
        "--data.pearl.args", json.dumps([*PEARL_SMOKE[2:], "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "pr")]),
        "--data.rl_size", "40", "--data.encoder_size", "20",
    ]
    made = smoke_cli(tmp_path, *pearl)
    after_generation = torch.rand(3)
    manifest = made.datamodule.dataset.manifest
    assert made.datamodule.dataset_dir.name == "data"  # the helper names the folder
    assert manifest["behaviour_policy"]["name"] == "PEARL" and manifest["behaviour_policy"]["rl_window"] == "first"
    again = smoke_cli(tmp_path, *pearl)  # the dataset exists now: loaded, not generated
    torch.testing.assert_close(torch.rand(3), after_generation)  # same stream either way
    assert again.datamodule.dataset.manifest == manifest


def test_pearl_config_of_another_family_is_refused(tmp_path):
    other = ["--data.pearl.config", str(ROOT / "conf/pearl/point_robot.yaml"), "--data.pearl.iteration", "1",
             "--data.pearl.args", json.dumps([*PEARL_SMOKE[2:], "--data.family.init_args.sparse", "true", "--trainer.logger", "false"])]
    with pytest.raises(ConfigError, match="must be the same tasks"):
        smoke_cli(tmp_path, *other, "--trainer.default_root_dir", str(tmp_path / "runs"))


def test_online_oracle_trains_on_true_rewards(tmp_path):
    made = smoke_cli(tmp_path, "--model.self_supervised.rewards", "true")
    made.trainer.fit(made.model, made.datamodule)
    dm = made.datamodule
    rows = dm.rl.online_rows()[dm.rl.written > 0]
    rows = rows[:, : int(dm.rl.written[dm.rl.written > 0].min())]
    assert rows.numel() and not rows["generated"].any()
    goals = dm.train_tasks[rows["task"].squeeze(-1)]
    expected = -(rows["next", "observation"] - goals).norm(dim=-1, keepdim=True)  # Point Robot's dense reward
    torch.testing.assert_close(rows["reward"], expected)


def test_pearl_resumed_from_a_mid_run_checkpoint_ends_bit_identical(tmp_path):
    keep = ("--checkpoint.save_top_k", "-1")
    clean = pearl_cli(tmp_path / "clean", *keep)
    clean.trainer.fit(clean.model, clean.datamodule)
    # after 20 updates (checkpoints are named by update): iteration 1 collected and trained on, iteration 2 not yet
    (ckpt,) = (tmp_path / "clean" / "runs").rglob("*step=20.ckpt")
    resumed = pearl_cli(tmp_path / "resumed", *keep)
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(ckpt))
    assert resumed.model.counter_state() == clean.model.counter_state()
    for key, value in clean.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert (resumed.datamodule.rl.storage == clean.datamodule.rl.storage).all()
    assert (resumed.datamodule.encoder.storage == clean.datamodule.encoder.storage).all()
