"""LightningCLI wiring: ``python -m smac_lightning {fit,validate,test,predict} --config conf/<task>.yaml``.

A config's top-level ``algorithm`` picks the module and data module: ``smac`` (the default:
offline dataset, then self-supervised phase) or ``pearl`` (online, ground-truth rewards).

``python -m smac_lightning data make --config conf/<task>.yaml [--overwrite]`` generates the
offline dataset a config names without training.

``python -m smac_lightning compare --config conf/<task>.yaml --seeds N`` runs SMAC, the Online
Oracle, offline-only SMAC and meta-BC per seed and summarises them (``compare.py``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import MLFlowLogger
from jsonargparse import lazy_instance

import yaml

from smac_lightning.algos import PEARL, SMAC
from smac_lightning.callbacks import LogConfigToMLflow
from smac_lightning.data import OfflineMetaDataModule, OnlineMetaDataModule
from smac_lightning.data.dataset import load_dataset
from smac_lightning.data.summary import summarize
from smac_lightning.errors import ConfigError, SmacError
from smac_lightning.tracking import ResilientMLFlowLogger, check_reachable

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3 refuses a plain ./mlruns file store


ALGORITHMS = {"smac": (SMAC, OfflineMetaDataModule), "pearl": (PEARL, OnlineMetaDataModule)}


class SMACCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--algorithm", default="smac", choices=sorted(ALGORITHMS),
            help="which method the config trains: smac (offline data + self-supervision) or pearl (online)",
        )
        parser.link_arguments("data.obs_dim", "model.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.act_dim", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "trainer.logger": lazy_instance(
                    ResilientMLFlowLogger, experiment_name="smac_lightning", tracking_uri=DEFAULT_TRACKING_URI
                ),
                "trainer.default_root_dir": "runs",
                "trainer.max_epochs": -1,  # the module stops at its update budget
                "trainer.check_val_every_n_epoch": None,
                "trainer.num_sanity_val_steps": 0,
                # A checkpoint after every meta-test (save_on_train_epoch_end=False: the epoch never
                # ends). No monitor, so last.ckpt is always the newest state: with a monitor, Lightning
                # refreshes last.ckpt only when the monitored value improves, and a resume would go back.
                "checkpoint.save_on_train_epoch_end": False,
                "checkpoint.save_last": True,
            }
        )


    def _check_tracking(self) -> None:
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                check_reachable(logger._tracking_uri)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        chosen = config.get("algorithm", "smac")
        if ALGORITHMS[chosen][0] is not self.model_class:
            raise ConfigError(
                f"algorithm: {chosen} reached the {self.model_class.__name__} command line; give it at the top "
                f"level of the first --config file (or as --algorithm {chosen}) so the right one is built"
            )

    def before_fit(self) -> None:
        self._check_tracking()
        if self.config_init["fit"].get("ckpt_path") == "last":
            self._resume_last()

    before_validate = before_test = _check_tracking

    def _resume_last(self) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` under the run folder, and the same MLflow run.

        Checkpoints live in ``<default_root_dir>/<experiment id>/<run id>/checkpoints``, so the
        path names the run to continue; Lightning alone would look in the new run's empty folder.
        """
        root = Path(self.trainer.default_root_dir)
        found = sorted(root.glob("*/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError(
                f"--ckpt_path last: no last.ckpt under {root}/<experiment>/<run>/checkpoints. Give the path of a "
                f"checkpoint instead, or start without --ckpt_path."
            )
        last = found[-1]
        self.config_init["fit"]["ckpt_path"] = str(last)
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger._run_id is None:
                logger._run_id = last.parent.parent.name
        print(f"resuming from {last}", file=sys.stderr)


def algorithm_of(args: list[str]) -> str:
    """The ``algorithm`` the command line asks for: ``--algorithm``, else the last config file naming one."""
    chosen = "smac"
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
        if arg.startswith("--algorithm"):
            chosen = value
        elif arg.startswith("--config") or arg == "-c":
            path = Path(value)
            try:
                loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
            except yaml.YAMLError:
                loaded = None  # LightningCLI reports the broken file itself
            if isinstance(loaded, dict) and "algorithm" in loaded:
                chosen = loaded["algorithm"]
    if chosen not in ALGORITHMS:
        raise ConfigError(f"algorithm: {chosen!r} is unknown; choose one of {sorted(ALGORITHMS)}")
    return chosen


def cli(args: list[str] | None = None, run: bool = True) -> SMACCLI:
    module, datamodule = ALGORITHMS[algorithm_of(sys.argv[1:] if args is None else args)]
    return SMACCLI(
        module,
        datamodule,
        save_config_callback=LogConfigToMLflow,
        save_config_kwargs={"save_to_log_dir": False},
        args=args,
        run=run,
    )


class _DatasetCLI(SMACCLI):
    """Parses a training config and builds only its data module."""

    def before_instantiate_classes(self) -> None:
        """Any ``algorithm`` line is fine: only the data is made."""

    def instantiate_classes(self) -> None:
        self.datamodule = self.parser.instantiate_classes(self.config).get("data")


def data_command(args: list[str]) -> None:
    """``data make --config ... [--overwrite]``: build (or rebuild) the config's offline dataset;
    ``data info DIR``: what a dataset holds."""
    usage = (
        "usage: python -m smac_lightning data make --config CONFIG [--config OVERLAY ...] [--overwrite]\n"
        "       python -m smac_lightning data info DATASET_DIR"
    )
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        raise SystemExit(0 if args else 2)
    if args[0] == "info" and len(args) == 2:
        print(summarize(load_dataset(args[1])))
        return
    if args[0] != "make":
        print(f"unknown data command {args[0]!r}\n{usage}", file=sys.stderr)
        raise SystemExit(2)
    made = _DatasetCLI(
        SMAC, OfflineMetaDataModule, args=[a for a in args[1:] if a != "--overwrite"], run=False, save_config_callback=None
    )
    dm = made.datamodule
    if "--overwrite" in args and dm.dataset_dir.exists():
        shutil.rmtree(dm.dataset_dir)
    dm.prepare_data()
    manifest = load_dataset(dm.dataset_dir, dm.family.config()).manifest
    print(
        f"dataset ready at {dm.dataset_dir}: {manifest['family']['name']}, "
        f"{len(manifest['tasks']['train'])} train / {len(manifest['tasks']['test'])} test tasks, "
        f"{manifest['sizes']['rl']} RL + {manifest['sizes']['encoder']} encoder transitions per task"
    )
    if "success_rate" in manifest:
        print(f"scripted trajectories achieving the rewarded behaviour: {manifest['success_rate']}")
    previews = dm.dataset_dir / "previews"
    if previews.is_dir():
        _log_previews(made.config, dm.dataset_dir, previews, manifest['family'])


def _log_previews(config, dataset_dir: Path, previews: Path, family: dict) -> None:
    """Log a dataset's scene pictures to an MLflow run of the config's tracking store."""
    import mlflow

    logger = config.get("trainer", {}).get("logger")
    init_args = getattr(logger, "init_args", None) or {}
    uri = init_args.get("tracking_uri") or DEFAULT_TRACKING_URI
    experiment = init_args.get("experiment_name") or "smac_lightning"
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"data {dataset_dir.name}") as run:
        mlflow.log_params({"dataset_dir": str(dataset_dir), "family": json.dumps(family)})
        mlflow.log_artifacts(str(previews), artifact_path="previews")
    print(f"scene previews: {previews} (MLflow run {run.info.run_id} in {uri})")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["data"]:
            data_command(args[1:])
        elif args[:1] == ["compare"]:
            from smac_lightning.compare import USAGE, run

            if args[1:2] in (["-h"], ["--help"]):
                print(USAGE)
                return
            run(args[1:])
        else:
            cli(argv)  # None: LightningCLI reads sys.argv itself
    except SmacError as err:
        print(f"smac_lightning: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
