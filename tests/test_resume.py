"""Exact resume: a run restarted from any of its checkpoints ends bit-identical to one never stopped."""

import pytest
import torch

from smac_lightning.algos import Phase

from helpers import smoke_cli

pytestmark = pytest.mark.slow
LONGER = ("--model.self_supervised.iterations", "4", "--checkpoint.save_top_k", "-1")


def _final_state(made):
    module, dm = made.model, made.datamodule
    return {
        "model": {k: v.clone() for k, v in module.state_dict().items()},
        "online_rl": dm.rl.online_rows().clone(),
        "online_encoder": dm.encoder.online_rows().clone(),
        "counters": (module.updates, module.online_transitions, int(module.phase)),
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    made = smoke_cli(tmp_path, *LONGER)
    made.trainer.fit(made.model, made.datamodule)
    return tmp_path, _final_state(made)


# checkpoints after updates 40 (end of the offline phase) and 80 (middle of the self-supervised
# phase), named by their update
@pytest.mark.parametrize("killed_at", [40, 80])
def test_resume_from_a_checkpoint_is_bit_identical(uninterrupted, tmp_path, killed_at):
    run_dir, expected = uninterrupted
    (ckpt,) = run_dir.glob(f"runs/*/*/checkpoints/*step={killed_at}.ckpt")
    assert torch.load(ckpt, weights_only=False)["smac"]["updates"] == killed_at
    resumed = smoke_cli(tmp_path, *LONGER, "--data.dataset_dir", str(run_dir / "data"))
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(ckpt))
    got = _final_state(resumed)
    # iterations of 120 transitions at self-supervised updates 0, 20, 40 and 60
    assert got["counters"] == expected["counters"] == (120, 480, int(Phase.SELF_SUPERVISED))
    for key, value in expected["model"].items():
        assert torch.equal(got["model"][key], value), f"{key} differs after resuming at update {killed_at}"
    assert (got["online_rl"] == expected["online_rl"]).all()
    assert (got["online_encoder"] == expected["online_encoder"]).all()


def test_a_killed_run_resumed_with_ckpt_path_last_ends_like_one_never_stopped(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import SMOKE_ARGS, run_cli

    args = ("fit", *SMOKE_ARGS, *LONGER[:2])
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    assert run_cli(clean, *args).returncode == 0
    run = subprocess.Popen([sys.executable, "-m", "smac_lightning", *args], cwd=killed,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(killed.glob("runs/*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # somewhere in the self-supervised phase, mid-collection or mid-update
    assert run.poll() is None, "the run finished before it could be killed"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    resumed = run_cli(killed, *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (expected,) = clean.glob("runs/*/*/checkpoints/last.ckpt")
    (got,) = killed.glob("runs/*/*/checkpoints/last.ckpt")
    expected, got = torch.load(expected, weights_only=False), torch.load(got, weights_only=False)
    assert got["smac"] == expected["smac"]
    for key, value in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    for opt_expected, opt_got in zip(expected["optimizer_states"], got["optimizer_states"]):
        for index, state in opt_expected["state"].items():
            assert torch.equal(opt_got["state"][index]["exp_avg"], state["exp_avg"])
