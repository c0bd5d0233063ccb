"""A real `mlflow server` on 127.0.0.1: what arrives there, and runs that outlive the server."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest
import torch

from conftest import SMOKE_ARGS, run_cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the server forks a uvicorn child
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    _kill(server)
    pytest.fail("mlflow server did not start within 90 s")


def _kill(server):
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    process, uri = _start_server(tmp_path)
    yield process, uri
    if process.poll() is None:
        _kill(process)


# Fail fast instead of MLflow's default minutes of retries once the server is gone.
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def test_params_metrics_and_checkpoints_arrive_at_the_server(tmp_path, server):
    _, uri = server
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--trainer.logger.init_args.tracking_uri", uri,
                  "--trainer.logger.init_args.log_model", "all")
    assert out.returncode == 0, out.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("smac_lightning").experiment_id])
    assert run.data.params["config.model.offline_updates"] == "40"
    assert "eval/test/final_return" in run.data.metrics and "train/critic_loss" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    assert "last" in artifacts and "epoch=0-step=80" in artifacts  # Lightning files each checkpoint by name (its update)
    files = [a.path for a in client.list_artifacts(run.info.run_id, "last")]
    assert "last/last.ckpt" in files
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store


def test_unreachable_server_fails_at_once_with_a_clear_message(tmp_path):
    started = time.monotonic()
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--trainer.logger.init_args.tracking_uri", f"http://127.0.0.1:{_free_port()}")
    assert out.returncode == 2
    assert "tracking server at http://127.0.0.1" in out.stderr and "is unreachable" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - started < 60


def test_a_server_that_goes_away_mid_run_loses_nothing_on_disk(tmp_path, server):
    process, uri = server
    run = subprocess.Popen(
        [sys.executable, "-m", "smac_lightning", "fit", *SMOKE_ARGS, "--trainer.logger.init_args.tracking_uri", uri],
        cwd=tmp_path, env={**os.environ, **QUICK}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run exists, then pull the plug
        experiment = client.get_experiment_by_name("smac_lightning")
        if experiment and client.search_runs([experiment.experiment_id]):
            break
        time.sleep(0.2)
    _kill(process)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    assert "MLflow logging to" in stderr and "training goes on" in stderr
    (last,) = tmp_path.glob("runs/*/*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=False)["smac"]["updates"] == 80
