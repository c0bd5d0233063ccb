"""Log the fully resolved config to the MLflow run (LightningCLI's own callback needs a log dir)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_warn


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Leaves under dotted names; ``init_args`` levels are left out of the names (``model.lr``), as
    on the command line, and jsonargparse's own ``__path__`` entries are dropped."""
    flat = {}
    for key, value in tree.items():
        if key.startswith("__"):
            continue
        name = prefix if key == "init_args" else f"{prefix}{key}."
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name[:-1]] = value
    return flat


class LogConfigToMLflow(SaveConfigCallback):
    """``config.yaml`` as a run artifact, every leaf of it as a ``config.<key>`` param, and the
    dataset's scene pictures where it has some."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                params = flatten(self.config.as_dict())
                params.pop("config", None)  # the --config paths themselves
                try:
                    logger.experiment.log_text(logger.run_id, text, "config.yaml")
                    logger.log_hyperparams({f"config.{k}": v for k, v in params.items()})
                    dataset_dir = getattr(trainer.datamodule, "dataset_dir", None)  # online PEARL has none
                    previews = None if dataset_dir is None else Path(dataset_dir) / "previews"
                    if previews is not None and previews.is_dir():  # Sawyer's scene pictures
                        logger.experiment.log_artifacts(logger.run_id, str(previews), "dataset_previews")
                except Exception as err:  # the server may go away at any moment: the run goes on
                    rank_zero_warn(f"MLflow logging to {logger._tracking_uri} failed ({type(err).__name__}: {err}) "
                                   f"while logging the config; training goes on.")
