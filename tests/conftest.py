import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from smac_lightning.data import generate_dataset
from smac_lightning.envs import PointRobotFamily


@pytest.fixture(scope="session")
def family():
    return PointRobotFamily(num_train_tasks=6, num_test_tasks=3, horizon=10)


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory, family):
    path = tmp_path_factory.mktemp("datasets") / "point_robot"
    generate_dataset(family, path, rl_size=50, encoder_size=30, seed=3, progress=False)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


ROOT = Path(__file__).resolve().parents[1]
SMOKE_ARGS = ["--config", str(ROOT / "conf/point_robot.yaml"), "--config", str(ROOT / "conf/smoke.yaml")]


def run_cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m smac_lightning ARGS`` in ``cwd``, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "smac_lightning", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The README's quick check, run once: smoke fit in a fresh folder with every default."""
    cwd = tmp_path_factory.mktemp("smoke")
    started = time.perf_counter()
    proc = run_cli(cwd, "fit", *SMOKE_ARGS)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    return cwd, proc, seconds
