"""``python -m smac_lightning data {make,info,export,import}``: make a config's offline dataset without
training, say what a dataset holds, and carry it to Minari and back."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

from smac_lightning.cli import SMACCLI, cli
from smac_lightning.data import OfflineMetaDataModule
from smac_lightning.data.dataset import load_dataset
from smac_lightning.data.minari_io import export_minari, import_minari
from smac_lightning.data.summary import summarize
from smac_lightning.errors import ConfigError
from smac_lightning.tracking import DEFAULT_TRACKING_URI, check_reachable


class _DatasetCLI(SMACCLI):
    """Parses a training config and builds only its data module."""

    def instantiate_classes(self) -> None:
        self.datamodule = self.parser.instantiate_classes(self.config).get("data")


def data_command(args: list[str]) -> None:
    """``data make --config ... [--overwrite]``: build (or rebuild) the config's offline dataset;
    ``data info DIR``: what a dataset holds; ``data export DIR --format minari`` and ``data import
    NAMESPACE/NAME DIR``: to Minari and back."""
    usage = (
        "usage: python -m smac_lightning data make --config CONFIG [--config OVERLAY ...] [--overwrite]\n"
        "       python -m smac_lightning data info DATASET_DIR\n"
        "       python -m smac_lightning data export DATASET_DIR --format minari [--namespace NAMESPACE]\n"
        "       python -m smac_lightning data import NAMESPACE/NAME DATASET_DIR\n"
        "(Minari datasets live in MINARI_DATASETS_PATH, default ~/.minari/datasets; export writes\n"
        " NAMESPACE/<folder name>/{train-rl,train-encoder,test-encoder}-v0, namespace smac_lightning)"
    )
    if not args or "-h" in args or "--help" in args:
        print(usage)
        raise SystemExit(0 if args else 2)
    if args[0] == "info" and len(args) == 2:
        print(summarize(load_dataset(args[1])))
        return
    if args[0] == "export" and len(args) >= 2:
        options = dict(zip(args[2::2], args[3::2]))
        if options.get("--format") != "minari" or set(options) - {"--format", "--namespace"}:
            raise ConfigError(f"data export takes --format minari [--namespace NAMESPACE], got {args[2:]}\n{usage}")
        source = Path(args[1])
        ids = export_minari(load_dataset(source), source.resolve().name, options.get("--namespace", "smac_lightning"))
        print("exported to Minari: " + ", ".join(ids))
        return
    if args[0] == "import" and len(args) == 3:
        namespace, _, name = args[1].rpartition("/")
        if not namespace:
            raise ConfigError(f"data import takes NAMESPACE/NAME (as export printed it, without the buffer part), got {args[1]!r}")
        imported = import_minari(namespace, name, Path(args[2]))
        print(f"imported {args[1]} into {args[2]}: {imported.manifest['sizes']} transitions per task")
        return
    if args[0] != "make":
        print(f"unknown data command {args[0]!r}\n{usage}", file=sys.stderr)
        raise SystemExit(2)
    with warnings.catch_warnings():  # LightningCLI warns when given args besides sys.argv: here they are its share of them
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        made = cli([a for a in args[1:] if a != "--overwrite"], run=False, cls=_DatasetCLI, save_config_callback=None)
    dm = made.datamodule
    if not isinstance(dm, OfflineMetaDataModule):
        raise ConfigError(f"data make: the config's data module is {type(dm).__name__}: an online learner makes no dataset")
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
