"""An online learner's replays, part-way through its run, as an offline dataset (paper appendix C.2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from smac_lightning.data.dataset import OfflineDataset
from smac_lightning.data.generate import collect_valid_rows, write_dataset
from smac_lightning.errors import ConfigError
from smac_lightning.rollout import LatentPolicy


@dataclass
class DatasetExport:
    """Which rows of PEARL's replays become SMAC's offline dataset, and when.

    Args:
        path: the dataset folder to write (refused if it exists).
        iteration: export once this many iterations have been collected and trained on
            (Cheetah Velocity 50, Ant Direction 100 in the paper).
        rl_window: ``first`` or ``last`` rows of each training task's RL replay
            (Cheetah Velocity ``first``, Ant Direction ``last``).
        rl_size: RL transitions per training task.
        encoder_size: the last ``encoder_size`` rows of each task's encoder replay (exploration, z ~ p(z)).
        seed: seed of the held-out tasks' context collection.

    The held-out tasks were never collected on: their context buffers (used only by the
    offline-context diagnostics) are ``encoder_size`` transitions of the exporting policy with z ~ p(z).
    """

    path: str
    iteration: int
    rl_window: str = "first"
    rl_size: int = 1200
    encoder_size: int = 400
    seed: int = 0

    def __post_init__(self):
        if self.rl_window not in ("first", "last"):
            raise ConfigError(f"export.rl_window must be 'first' or 'last', got {self.rl_window!r}")
        if min(self.iteration, self.rl_size, self.encoder_size) < 1:
            raise ConfigError(f"export.iteration, rl_size and encoder_size must be >= 1, got {self}")


def export_dataset(config: DatasetExport, module, datamodule) -> OfflineDataset:
    """Write ``datamodule``'s replay windows (and fresh held-out contexts) as a dataset at ``config.path``."""
    family = datamodule.family
    try:
        buffers = {
            "train/rl": datamodule.rl.window(config.rl_window, config.rl_size),
            "train/encoder": datamodule.encoder.window("last", config.encoder_size),
        }
    except ValueError as err:
        raise ConfigError(f"cannot export the dataset to {config.path}: {err}") from None
    behaviour = LatentPolicy.prior_behaviour(module.policy, module.hparams.latent_dim)
    with torch.random.fork_rng():  # the held-out contexts must not shift the training run's random stream
        torch.manual_seed(config.seed)
        buffers["test/encoder"] = collect_valid_rows(
            family, datamodule.test_tasks.numpy(), config.encoder_size, behaviour, np.random.default_rng(config.seed)
        )
    manifest = {
        "family": family.config(),
        "tasks": {"train": datamodule.train_tasks.tolist(), "test": datamodule.test_tasks.tolist()},
        "behaviour_policy": {"name": type(module).__name__, "updates": module.updates, **asdict(config)},
        "seed": config.seed,
        "sizes": {"rl": config.rl_size, "encoder": config.encoder_size},
        "obs_dim": datamodule.obs_dim,
        "act_dim": datamodule.act_dim,
    }
    return write_dataset(Path(config.path), manifest, {k: v.cpu() for k, v in buffers.items()}, family)
