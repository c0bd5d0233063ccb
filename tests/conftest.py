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
