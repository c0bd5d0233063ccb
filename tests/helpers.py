"""Build the smoke configuration in-process, for tests that need the module, data and trainer."""

from __future__ import annotations

from pathlib import Path

from smac_lightning.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--config", str(ROOT / "conf/point_robot.yaml"), "--config", str(ROOT / "conf/smoke.yaml")]


def smoke_cli(tmp_path: Path, *overrides: str, config: str = "point_robot"):
    """The smoke overlay on ``conf/<config>.yaml`` with its dataset (made and loaded, as ``Trainer.fit``
    would), MLflow store and checkpoints under ``tmp_path``."""
    args = [
        "--config", str(ROOT / f"conf/{config}.yaml"), "--config", str(ROOT / "conf/smoke.yaml"),
        "--data.dataset_dir", str(tmp_path / "data"),
        "--trainer.logger.init_args.tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--trainer.logger.init_args.artifact_location", str(tmp_path / "artifacts"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        *overrides,
    ]
    made = cli(args, run=False)
    made.datamodule.prepare_data()
    made.datamodule.setup("fit")
    return made


PEARL_SMOKE = ["--config", str(ROOT / "conf/pearl/point_robot.yaml"), "--config", str(ROOT / "conf/pearl/smoke.yaml")]


def pearl_cli(tmp_path: Path, *overrides: str):
    """PEARL's smoke config with its MLflow store and checkpoints under ``tmp_path``."""
    args = [
        *PEARL_SMOKE,
        "--trainer.logger.init_args.tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--trainer.logger.init_args.artifact_location", str(tmp_path / "artifacts"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        *overrides,
    ]
    return cli(args, run=False)
