"""Inputs that must stop a run with a message naming the cause and the fix."""

import json
import shutil

import pytest
import torch
from tensordict import TensorDict

from smac_lightning.algos import SMAC
from smac_lightning.data import DatasetError, OfflineMetaDataModule
from smac_lightning.data.dataset import write_manifest
from smac_lightning.errors import ConfigError, TrainingDiverged

from helpers import smoke_cli


def test_observation_size_mismatch_between_dataset_and_env(dataset_dir, family, tmp_path):
    path = tmp_path / "wider"
    shutil.copytree(dataset_dir, path)
    for name in ("train/rl", "train/encoder", "test/encoder"):
        td = TensorDict.load_memmap(path / name).clone()
        shutil.rmtree(path / name)
        td.set("observation", torch.cat([td["observation"], torch.zeros(*td.batch_size, 1)], -1))
        td.set(("next", "observation"), torch.cat([td["next", "observation"], torch.zeros(*td.batch_size, 1)], -1))
        td.memmap(path / name)
    manifest = json.loads((path / "manifest.json").read_text())
    write_manifest(path, {**manifest, "obs_dim": 3})  # consistent on disk, wrong for the env
    with pytest.raises(DatasetError, match="the dataset has obs_dim=3 but the point_robot env gives 2") as err:
        OfflineMetaDataModule(family, str(path), rl_size=50, encoder_size=30).setup("fit")
    assert "--overwrite" in str(err.value)


def test_dataset_of_other_sizes_than_the_config_asks(dataset_dir, family):
    with pytest.raises(DatasetError, match=r"has \{'rl': 50, 'encoder': 30\} transitions per task but the config asks"):
        OfflineMetaDataModule(family, str(dataset_dir), rl_size=1200, encoder_size=400).setup("fit")


def test_max_steps_is_refused_with_the_fix(tmp_path):
    made = smoke_cli(tmp_path, "--trainer.max_steps", "100")
    with pytest.raises(ConfigError, match="Remove trainer.max_steps"):
        made.trainer.fit(made.model, made.datamodule)


def test_bad_self_supervised_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="prior_steps must be >= 1"):
        smoke_cli(tmp_path, "--model.self_supervised.prior_steps", "0")


@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    made = smoke_cli(tmp_path, "--trainer.log_every_n_steps", "5", "--model.updates_per_batch", "5")
    compute = SMAC.compute_losses

    def poisoned(module, context, rl, task=None):
        losses = compute(module, context, rl, task)
        if module.updates >= 52:
            losses["critic_loss"] = losses["critic_loss"] * float("nan")
        return losses

    monkeypatch.setattr(SMAC, "compute_losses", poisoned)
    with pytest.raises(TrainingDiverged, match=r"train/critic_loss.*NaN.*by update 55.*last good checkpoint is .*last.ckpt"):
        made.trainer.fit(made.model, made.datamodule)
    (last,) = tmp_path.glob("runs/*/*/checkpoints/last.ckpt")
    state = torch.load(last, weights_only=False)
    assert state["smac"]["updates"] == 40
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_an_algorithm_given_the_other_algorithms_data_module_is_refused(tmp_path):
    from smac_lightning.cli import cli

    from helpers import ROOT

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("data:\n  class_path: smac_lightning.data.OnlineMetaDataModule\n")
    with pytest.raises(ConfigError, match=r"SMAC trains on OfflineMetaDataModule \(data.class_path: smac_lightning.data.Offline"):
        cli(["--config", str(ROOT / "conf/point_robot.yaml"), "--config", str(overlay)], run=False, save_config_callback=None)


def test_pearl_data_config_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigError, match="data.pearl.config: nowhere.yaml is not a file"):
        smoke_cli(tmp_path, "--data.pearl.config", "nowhere.yaml", "--data.pearl.iteration", "1")
