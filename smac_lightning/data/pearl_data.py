"""Offline datasets made the paper's way: an early-stopped PEARL run's replays (appendix C.2)."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from smac_lightning.data.dataset import OfflineDataset, load_dataset
from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PEARLRecipe:
    """Generate the dataset with a PEARL run instead of the family's scripted behaviour policy.

    Args:
        config: the PEARL config (e.g. ``conf/pearl/cheetah_vel.yaml``), relative to the working
            directory or to the project's folder; its task family must be this config's.
        iteration: PEARL iterations before the export; the run stops there.
        rl_window: ``first`` or ``last`` ``rl_size`` rows of each task's RL replay.
        args: more command-line overrides for the PEARL run, e.g. ``["--model.updates_per_iteration", "2000"]``.
    """

    config: str
    iteration: int
    rl_window: str = "first"
    args: list[str] = field(default_factory=list)

    def suffix(self) -> str:
        """What a default dataset folder name adds for this source."""
        return f"-pearl-it{self.iteration}-{self.rl_window}"

    def config_path(self) -> Path:
        path = Path(self.config)
        if not path.is_absolute() and not path.exists() and (PACKAGE_ROOT / path).exists():
            path = PACKAGE_ROOT / path
        if not path.is_file():
            raise ConfigError(f"data.pearl.config: {self.config} is not a file (looked in {Path.cwd()} and {PACKAGE_ROOT})")
        return path

    def command(self, path: Path, rl_size: int, encoder_size: int, seed: int) -> list[str]:
        """The PEARL run, as its own process: ``fit`` of the PEARL config that stops at the export."""
        return [
            sys.executable, "-m", "smac_lightning", "fit", "--config", str(self.config_path()), *self.args,
            "--model.iterations", str(self.iteration),
            "--model.export.path", str(path), "--model.export.iteration", str(self.iteration),
            "--model.export.rl_window", self.rl_window, "--model.export.rl_size", str(rl_size),
            "--model.export.encoder_size", str(encoder_size), "--model.export.seed", str(seed),
        ]

    def generate(self, family: TaskFamily, path: Path, rl_size: int, encoder_size: int, seed: int) -> OfflineDataset:
        """Run PEARL in a child process (its progress shows; this process's random streams stay untouched)."""
        command = self.command(path, rl_size, encoder_size, seed)
        self._check_family(command, family)
        tqdm.write(
            f"{path} is missing: generating it with PEARL ({self.iteration} iterations of {self.config}); "
            f"the progress bar below estimates the time left"
        )
        started = time.perf_counter()
        if subprocess.run(command).returncode != 0 or not path.is_dir():
            raise ConfigError(f"the PEARL run that makes {path} failed or stopped before exporting it (its output is above): {shlex.join(command)}")
        tqdm.write(f"dataset generated with PEARL in {time.perf_counter() - started:.0f} s")
        return load_dataset(path, family.config())

    def _check_family(self, command: list[str], family: TaskFamily) -> None:
        """Before hours of PEARL: its config must train on this config's tasks."""
        printed = subprocess.run([*command, "--print_config"], capture_output=True, text=True)
        if printed.returncode != 0:
            raise ConfigError(f"data.pearl: the PEARL command does not parse:\n{printed.stderr[-2000:]}")
        spec = yaml.safe_load(printed.stdout)["data"]["init_args"]["family"]
        module, _, name = spec["class_path"].rpartition(".")
        theirs = getattr(importlib.import_module(module), name)(**spec.get("init_args", {})).config()
        if theirs != family.config():
            raise ConfigError(
                f"data.pearl.config {self.config} trains on {theirs}, but this config's family is "
                f"{family.config()}: they must be the same tasks"
            )
