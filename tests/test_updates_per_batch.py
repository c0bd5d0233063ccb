"""Several updates per Lightning batch: the same training as one update per batch, in fewer batches."""

import mlflow
import pytest
import torch

from smac_lightning.errors import ConfigError

from helpers import smoke_cli

OFFLINE = ("--model.self_supervised.iterations", "0")
ONE, FIVE = ("--model.updates_per_batch", "1"), ("--model.updates_per_batch", "5")


def _fit(tmp_path, *overrides):
    made = smoke_cli(tmp_path, *overrides)
    made.trainer.fit(made.model, made.datamodule)
    return made


def _logged_steps(tmp_path, key: str) -> list[int]:
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("smac_lightning").experiment_id])
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_five_updates_per_batch_train_the_offline_phase_bit_identically_in_a_fifth_of_the_batches(tmp_path):
    one = _fit(tmp_path / "one", *OFFLINE, *ONE)
    five = _fit(tmp_path / "five", *OFFLINE, *FIVE)
    assert one.model.updates == five.model.updates == 40
    assert (one.trainer.fit_loop.epoch_loop._batches_that_stepped, five.trainer.fit_loop.epoch_loop._batches_that_stepped) == (40, 8)
    for key, value in one.model.state_dict().items():
        assert torch.equal(five.model.state_dict()[key], value), key
    # losses logged and evaluations run at the same updates (the smoke config: every 10, at 40)
    for key in ("train/critic_loss", "eval/test/final_return"):
        assert _logged_steps(tmp_path / "five", key) == _logged_steps(tmp_path / "one", key)
    assert _logged_steps(tmp_path / "five", "train/critic_loss") == [10, 20, 30, 40]
    assert [e["eval/test/final_return"] for e in five.model.evaluations] == [e["eval/test/final_return"] for e in one.model.evaluations]


def test_a_run_of_five_updates_per_batch_resumes_bit_identically_in_the_self_supervised_phase(tmp_path):
    keep = ("--checkpoint.save_top_k", "-1")
    uninterrupted = _fit(tmp_path / "a", *FIVE, *keep)
    # the checkpoint of the switch's evaluation, named by its update
    (ckpt,) = (tmp_path / "a").glob("runs/*/*/checkpoints/*step=40.ckpt")
    resumed = smoke_cli(tmp_path / "b", *FIVE, *keep)
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(ckpt))
    assert resumed.model.updates == uninterrupted.model.updates == 80
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert (resumed.datamodule.rl.online_rows() == uninterrupted.datamodule.rl.online_rows()).all()


@pytest.mark.parametrize("override, named", [
    (("--trainer.val_check_interval", "20"), None),  # a multiple of 4: accepted
    (("--trainer.log_every_n_steps", "6"), "trainer.log_every_n_steps=6"),
    (("--model.offline_updates", "42", "--trainer.val_check_interval", "42"), "model.offline_updates=42"),
    (("--model.self_supervised.updates_per_iteration", "10"), "model.self_supervised.updates_per_iteration=10"),
])
def test_counts_that_a_batch_would_straddle_are_refused_with_their_name(tmp_path, override, named):
    made = smoke_cli(tmp_path, "--model.updates_per_batch", "4", "--trainer.log_every_n_steps", "8", *override)
    if named is None:
        made.trainer.fit(made.model, made.datamodule)
        assert made.model.updates == 80
        return
    with pytest.raises(ConfigError, match=named + r" is not a multiple of model.updates_per_batch=4"):
        made.trainer.fit(made.model, made.datamodule)
