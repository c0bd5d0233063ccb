"""Two real CPU processes (gloo) through Lightning's DDP launcher."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_worker.py"), str(out)],
                          capture_output=True, text=True, timeout=300, cwd=out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_both_ranks_run_both_phases_with_averaged_gradients(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert rank0["updates"] == rank1["updates"] == 80
    for net in ("policy", "critic", "encoder"):
        for key, value in rank0[net].items():
            assert torch.equal(value, rank1[net][key]), f"{net}.{key} differs between ranks"


def test_each_rank_collects_its_own_online_data(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert rank0["online_transitions"] == rank1["online_transitions"] == 240  # 2 iterations of 2 tasks x 3 trajectories x 20 steps
    assert not torch.equal(rank0["online_rl"]["observation"], rank1["online_rl"]["observation"])


def test_evaluation_is_reduced_and_logged_once(ddp_run):
    out, (rank0, rank1) = ddp_run
    for key in ("eval/test/final_return", "diag/kl_online_paper"):
        assert rank0["metrics"][key] == rank1["metrics"][key]
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smac_lightning")
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "eval/test/final_return")
    assert len(history) == 2  # at the switch and at the end, from one process
