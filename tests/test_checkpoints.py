"""Checkpoints are whole or absent, even when the writer is killed; a broken one gets one line."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from smac_lightning.checkpoints import AtomicCheckpointIO, fork, upgrade_hparams
from smac_lightning.errors import ConfigError

WRITER = """
import sys, torch
from smac_lightning.checkpoints import AtomicCheckpointIO
io, i = AtomicCheckpointIO(), 0
while True:
    io.save_checkpoint({"i": i, "weights": torch.full((4_000_000,), float(i))}, sys.argv[1])
    i += 1
"""


def test_a_writer_killed_mid_write_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # several 16 MB writes later, most likely inside one
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    saved = torch.load(path, weights_only=False)
    assert (saved["weights"] == saved["i"]).all()  # a whole checkpoint, not the start of one


def test_a_truncated_checkpoint_is_named_with_the_newest_intact_one(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"i": 0}, tmp_path / "epoch=0-step=10.ckpt")
    time.sleep(0.01)
    io.save_checkpoint({"i": 1}, tmp_path / "last.ckpt")
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"last.ckpt is not a readable checkpoint .*newest intact one there is .*epoch=0-step=10.ckpt"):
        io.load_checkpoint(tmp_path / "last.ckpt")


def test_resuming_from_a_truncated_last_checkpoint_names_the_newest_intact_one(smoke_run, tmp_path):
    import shutil

    from conftest import SMOKE_ARGS, run_cli

    cwd, _, _ = smoke_run
    shutil.copytree(cwd, tmp_path / "run")
    (last,) = (tmp_path / "run").glob("runs/*/*/checkpoints/last.ckpt")
    last.write_bytes(last.read_bytes()[:1000])
    out = run_cli(tmp_path / "run", "fit", *SMOKE_ARGS, "--ckpt_path", "last")
    assert out.returncode == 2
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("smac_lightning: error:")]
    assert "last.ckpt is not a readable checkpoint" in line and "the newest intact one there is runs/" in line


def test_a_fork_sets_the_options_it_is_given_as_their_types_and_refuses_others():
    checkpoint = {"hyper_parameters": {"actor": {"lambda_pearl": 1.0}, "latent_dim": 5, "self_supervised": {"rewards": "generated", "collect": True}}}
    fork(checkpoint, {"self_supervised.rewards": "true", "actor.lambda_pearl": "0", "self_supervised.collect": "false"})
    # the choice 'true' stays a string; 0 becomes the float option's 0.0; false the bool's False
    assert checkpoint["hyper_parameters"] == {"actor": {"lambda_pearl": 0.0}, "latent_dim": 5, "self_supervised": {"rewards": "true", "collect": False}}
    assert isinstance(checkpoint["hyper_parameters"]["actor"]["lambda_pearl"], float)
    for changes, message in [
        ({"self_supervised.reward": "true"}, "model.self_supervised.reward: .* no 'reward' .it has collect, rewards"),
        ({"evaluation.runs_per_task": "8"}, "no 'evaluation' section"),
        ({"latent_dim": "9"}, "model.latent_dim decides the networks' shapes"),
        ({"decoder.hidden": "[8]"}, "model.decoder.hidden decides the networks' shapes"),
        ({"decoder": "{hidden: [8]}"}, "model.decoder holds options that decide the networks' shapes"),
        ({"actor.lambda_pearl": "off"}, r"model.actor.lambda_pearl holds 0.0 \(float\); 'off' is not one"),
        ({"self_supervised.collect": "2"}, "holds False .bool.; '2' is not one"),
    ]:
        with pytest.raises(ConfigError, match=message):
            fork(checkpoint, changes)


def test_a_checkpoint_from_before_the_actor_section_reads_under_the_new_names():
    old = {"awac_beta": 1.0, "lambda_pearl": 10.0, "actor_rows": "until_success", "alpha": 0.0, "value": "policy",
           "expectile": 0.9, "use_next_obs_in_context": False, "latent_dim": 5, "self_supervised": {"collect": True},
           "decoder_hidden": (64, 64), "evaluation": {"runs_per_task": 1, "resample_z": "trajectory", "exploration_z": "training"}}
    assert upgrade_hparams(old) == {"actor": {"beta": 1.0, "lambda_pearl": 10.0, "rows": "until_success", "alpha": 0.0},
                                    "latent_dim": 5, "self_supervised": {"collect": True}, "decoder": {"hidden": (64, 64)},
                                    "evaluation": {"runs_per_task": 1}, "z": {"resample": "trajectory", "exploration": "training"}}
    assert old["evaluation"]["resample_z"] == "trajectory"  # the checkpoint's own options are left as they were
    both = upgrade_hparams({"decoder_hidden": (32, 32), "decoder": {"hidden": (64, 64)}, "z": None, "evaluation": {"resample_z": "step"}})
    assert both["decoder"] == {"hidden": (64, 64)} and both["z"] == {"resample": "step"}  # the new name's value stands
    # a fork of it names the new options
    checkpoint = fork({"hyper_parameters": dict(old)}, {"actor.lambda_pearl": "1"})
    assert checkpoint["hyper_parameters"]["actor"]["lambda_pearl"] == 1.0 and "lambda_pearl" not in checkpoint["hyper_parameters"]
    # PEARL's options gain no actor section; a removed option away from its default cannot be read
    assert upgrade_hparams({"use_next_obs_in_context": False, "initial_alpha": 1.0}) == {"initial_alpha": 1.0}
    with pytest.raises(ConfigError, match="model.value='expectile', which was removed"):
        upgrade_hparams({**old, "value": "expectile"})


def test_a_fork_may_set_an_option_newer_than_the_checkpoint_typed_as_the_code_has_it():
    checkpoint = {"hyper_parameters": {"evaluation": {"runs_per_task": 4}}}
    with pytest.raises(ConfigError, match="no 'offline_context_size'"):
        fork(checkpoint, {"evaluation.offline_context_size": "64"})
    options = {"evaluation": {"runs_per_task": 4, "offline_context_size": 256, "deterministic": True}}
    fork(checkpoint, {"evaluation.offline_context_size": "64", "evaluation.deterministic": "false"}, options)
    assert checkpoint["hyper_parameters"]["evaluation"] == {"runs_per_task": 4, "offline_context_size": 64, "deterministic": False}
    with pytest.raises(ConfigError, match="no 'context_size'"):  # a name neither has is still refused
        fork(checkpoint, {"evaluation.context_size": "64"}, options)
