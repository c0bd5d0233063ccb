"""LightningCLI wiring: ``python -m smac_lightning {fit,validate,test,predict} --config conf/<task>.yaml``.

A config names its algorithm and data module by class (LightningCLI's subclass mode):
``model.class_path: smac_lightning.algos.SMAC`` with ``data.class_path:
smac_lightning.data.OfflineMetaDataModule`` (offline dataset, then self-supervised phase), or
``smac_lightning.algos.PEARL`` with ``smac_lightning.data.OnlineMetaDataModule`` (online,
ground-truth rewards). Options reach them without ``init_args`` (``--model.lr 1e-3``).

The ``data`` and ``compare`` commands and ``main`` are one layer up (``data_commands.py``, ``__main__.py``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from argparse import ArgumentError

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
import numpy as np
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.utilities import rank_zero_warn

from smac_lightning.algos import PEARL, SMAC
from smac_lightning.algos.base import MetaLearner
from smac_lightning.callbacks import EvaluationLines, LogConfigToMLflow, UpdatesBar
from smac_lightning.checkpoints import AtomicCheckpointIO, moved_option, upgrade_hparams
from smac_lightning.options_help import compact_help, dotted_options
from smac_lightning.data import MetaDataModule, OfflineMetaDataModule, OnlineMetaDataModule
from smac_lightning.errors import ConfigError, SmacError
from smac_lightning.plots import KLS, RETURNS, SUCCESS, run_curves, trajectories
from smac_lightning.precision import choose_precision, cpu_flags
from smac_lightning.report import end_of_run
from smac_lightning.tracking import DEFAULT_TRACKING_URI, ResilientMLFlowLogger, check_reachable

# Noise a user can do nothing about: Lightning's advertisement for its cloud logger, and a
# deprecation inside Lightning's own use of torch's pytree on every step.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")



DATA_OF = {SMAC: OfflineMetaDataModule, PEARL: OnlineMetaDataModule}  # each algorithm's data module


class SMACCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.init_args.act_dim", apply_on="instantiate")
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

    def _parse_ckpt_path(self) -> None:
        """As Lightning's (the model's options come from the checkpoint), with a checkpoint written
        before SMAC's options were grouped read under today's names."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return
        hparams = torch.load(path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if not hparams:
            return
        hparams = upgrade_hparams(hparams)
        model = {"class_path": class_path, "dict_kwargs": hparams} if class_path else hparams
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _check_tracking(self) -> None:
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                check_reachable(logger._tracking_uri)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        self._choose_precision(config)
        model, data = (_class(config, key) for key in ("model", "data"))
        wanted = next((d for m, d in DATA_OF.items() if issubclass(model, m)), None)
        if wanted is not None and not issubclass(data, wanted):
            raise ConfigError(
                f"{model.__name__} trains on {wanted.__name__} (data.class_path: smac_lightning.data.{wanted.__name__}), "
                f"but the config gives {data.__name__}"
            )

    def _choose_precision(self, config) -> None:
        """``trainer.precision`` left unset: the fastest this machine runs natively (``precision.py``),
        said on stderr at start and logged as the param ``precision_choice``."""
        self.precision_choice = None
        if config.get("trainer") is None or config.trainer.get("precision") is not None:
            return
        accelerator = config.trainer.get("accelerator") or "auto"
        if not isinstance(accelerator, str):
            accelerator = getattr(accelerator, "class_path", type(accelerator).__name__).rpartition(".")[2].lower()
        if accelerator == "auto":
            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
        precision, reason = choose_precision(accelerator, cpu_flags())
        config.trainer.precision = precision
        self.precision_choice = f"{precision}: {reason}"
        if self.subcommand:
            print(f"precision {self.precision_choice} (--trainer.precision overrides)", file=sys.stderr)

    def _log_precision_choice(self) -> None:
        if self.precision_choice is None:
            return
        for logger in self.trainer.loggers:
            try:
                logger.log_hyperparams({"precision_choice": self.precision_choice})
            except Exception as err:  # the server may be gone: the run goes on
                rank_zero_warn(f"could not log precision_choice ({type(err).__name__}: {err})")

    def _show_progress(self) -> None:
        """In a terminal, Lightning's bar counts updates against the budget and shows the phase and the
        last held-out return; otherwise (a log file, or the bar turned off) one line per evaluation."""
        trainer = self.trainer
        bar = trainer.progress_bar_callback
        if type(bar) in (TQDMProgressBar, RichProgressBar) and sys.stderr.isatty():  # Lightning's default, not the user's
            trainer.callbacks[trainer.callbacks.index(bar)] = UpdatesBar()
        elif not any(isinstance(c, EvaluationLines) for c in trainer.callbacks):
            if bar is not None and not sys.stderr.isatty():
                trainer.callbacks.remove(bar)
            trainer.callbacks.append(EvaluationLines())

    def _atomic_checkpoints(self) -> None:
        """No half-written checkpoint, ever (unless the user chose a checkpoint IO of their own)."""
        strategy = self.trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()

    def before_fit(self) -> None:
        self._show_progress()
        self._prepare("fit")

    def before_validate(self) -> None:
        self._prepare("validate")

    def before_test(self) -> None:
        self._prepare("test")

    def _prepare(self, stage: str) -> None:
        """What every command does before it runs: atomic checkpoints, a reachable tracking server,
        ``--ckpt_path last`` resolved (fit), the run named, the precision choice logged."""
        self._atomic_checkpoints()
        self._check_tracking()
        if stage == "fit" and self.config_init["fit"].get("ckpt_path") == "last":
            self._resume_last()
        self._name_run(stage)
        self._log_precision_choice()

    def after_fit(self) -> None:
        self._log_curves()
        self._report("fit")

    def _log_curves(self) -> None:
        """``curves.png`` in the MLflow run: its whole history (a resumed run's too), against updates."""
        loggers = [lg for lg in self.trainer.loggers if isinstance(lg, MLFlowLogger)]
        if not self.trainer.is_global_zero or not loggers:
            return
        logger = loggers[0]
        try:
            client, run_id = logger.experiment, logger.run_id
            updates = {m.step: m.value for m in client.get_metric_history(run_id, "progress/updates")}
            curves = {
                name: [(updates[m.step], m.value) for m in client.get_metric_history(run_id, name) if m.step in updates]
                for name in {**RETURNS, **SUCCESS, **KLS}
            }
            switch = self.model.hparams.get("offline_updates")
            with tempfile.TemporaryDirectory() as folder:
                title = f"{_run_name(logger)} ({self.datamodule.family.name})"
                client.log_artifact(run_id, str(run_curves(curves, switch, Path(folder) / "curves.png", title)))
                moments = {"at the switch": getattr(self.model, "switch_episodes", None), "at the end": getattr(self.model, "test_episodes", None)}
                moments = {name: episodes for name, episodes in moments.items() if episodes}
                drawable = self.datamodule.family.positions(np.zeros(self.datamodule.obs_dim)) is not None
                if moments and (drawable or "position" in next(iter(moments.values()))["online"].keys()):
                    path = trajectories(moments, self.datamodule.family.positions, Path(folder) / "trajectories.png", title)
                    client.log_artifact(run_id, str(path))
        except Exception as err:  # a picture is never worth a failed run
            rank_zero_warn(f"could not log curves.png to MLflow ({type(err).__name__}: {err})")

    def after_validate(self) -> None:
        self._report("validate")

    def after_test(self) -> None:
        self._report("test")

    def _report(self, stage: str) -> None:
        if not self.trainer.is_global_zero:
            return
        run = next(((_run_name(lg), lg._run_id, lg._tracking_uri) for lg in self.trainer.loggers if isinstance(lg, MLFlowLogger)), None)
        checkpoints = self.trainer.checkpoint_callback.dirpath if stage == "fit" and self.trainer.checkpoint_callback else None
        print(end_of_run(stage, self.model, time.perf_counter() - self._started, run, checkpoints), flush=True)

    def _name_run(self, stage: str) -> None:
        """A new MLflow run without a name is called ``<family>-<algorithm>-<stage>-<time>`` (MLflow's
        own random names repeat, since the seed also seeds them); ``validate``/``test`` runs name
        the checkpoint they evaluate in the tag ``smac_lightning.checkpoint`` and, when it came from
        a run of the same store (``runs/<experiment>/<run id>/checkpoints``), hang under that run."""
        self._started = time.perf_counter()
        name = f"{self.datamodule.family.name}-{type(self.model).__name__.lower()}-{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        ckpt_path = self.config_init[stage].get("ckpt_path")
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger._run_id is None:
                logger._run_name = logger._run_name or name
                if stage != "fit" and ckpt_path:
                    tags = {"smac_lightning.checkpoint": str(ckpt_path)}
                    parent = _run_of(Path(ckpt_path), logger._tracking_uri)
                    if parent is not None:
                        tags["mlflow.parentRunId"] = parent
                    logger.tags = {**(logger.tags or {}), **tags}

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


def _run_name(logger: MLFlowLogger) -> str:
    """The run's name, also for a resumed run (whose logger was given only its id)."""
    try:
        return logger._run_name or logger.experiment.get_run(logger.run_id).info.run_name
    except Exception:  # the server went away: the id will do
        return str(logger._run_id)


def _run_of(checkpoint: Path, tracking_uri: str) -> str | None:
    """The MLflow run a checkpoint of ``runs/<experiment>/<run id>/checkpoints`` belongs to, if that store has it."""
    if checkpoint.parent.name != "checkpoints":
        return None
    import mlflow

    try:
        return mlflow.tracking.MlflowClient(tracking_uri).get_run(checkpoint.parent.parent.name).info.run_id
    except Exception:  # another store, or not a run id
        return None


def _class(config, key: str) -> type:
    return _import(config[key]["class_path"])


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def explain(err: ArgumentError) -> str:
    """jsonargparse's parse error as the one line that matters, with the nearest option for a typo."""
    text = str(err)
    typo = re.search(r"class_path '([\w.]+)':\s*(?:Option '(\w+)' is not accepted|unrecognized arguments: --([\w.]+)="
                     r"|Group '(\w+)' does not accept option '(\w+)')", text)
    section = re.match(r'Parser key "(\w+)"', text)
    # a top-level option, or one inside a section (``z.resample``) from the command line or a config file
    key = typo and (typo.group(2) or typo.group(3) or f"{typo.group(4)}.{typo.group(5)}")
    if typo and section and section.group(1) == "model" and moved_option(key):
        return moved_option(key)
    if typo and section:
        known = dotted_options(_import(typo.group(1)))
        return _did_you_mean(f"--{section.group(1)}.{key}", key, known, f"--{section.group(1)}.")
    value = re.search(r'Parser key "(\w+)":.*?Parser key "([\w.]+)":\s*(Expected [^\n]+)', text, re.S)
    if value:  # an option's value of the wrong type or outside its choices
        expected = re.sub(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)", r"expected one of \1, got \2", value.group(3))
        return f"--{value.group(1)}.{value.group(2)}: {expected}"
    unknown = re.match(r"unrecognized arguments: --(trainer|checkpoint)\.(\w+)", text)
    if unknown:
        owner = Trainer if unknown.group(1) == "trainer" else ModelCheckpoint
        known = list(inspect.signature(owner).parameters)
        return _did_you_mean(f"--{unknown.group(1)}.{unknown.group(2)}", unknown.group(2), known, f"--{unknown.group(1)}.")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = [line.removeprefix("- ") for line in lines if line.startswith("- ") and "NoneType" not in line]
    return " ".join(lines[:1] + detail[:2])


def _model_help(args: list[str]):
    """The learner class ``--model.help NAME`` asks for (``SMAC``, ``PEARL`` or a class path), else None."""
    for i, arg in enumerate(args):
        name = arg.partition("=")[2] if arg.startswith("--model.help=") else args[i + 1] if arg == "--model.help" and i + 1 < len(args) else None
        if name is not None:
            learners = {"SMAC": SMAC, "PEARL": PEARL}
            return learners.get(name.rpartition(".")[2]) if name.rpartition(".")[2] in learners else None
    return None


def _did_you_mean(option: str, key: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"{option} is not an option{hint} (--help lists them)"


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def cli(args: list[str] | None = None, run: bool = True, cls: type[SMACCLI] = SMACCLI, **kwargs) -> SMACCLI:
    """LightningCLI in subclass mode for the algorithm (``model``) and its data module (``data``).
    A parse error becomes a ``ConfigError`` of one line (``--help`` stays complete)."""
    asked = _model_help(sys.argv[1:] if args is None else args)
    if asked is not None:  # jsonargparse's help gives each option four lines: one each here
        print(compact_help(asked))
        raise SystemExit(0)
    kwargs.setdefault("save_config_callback", LogConfigToMLflow)
    quiet = {"exit_on_error": False}
    try:
        return cls(
            MetaLearner, MetaDataModule, subclass_mode_model=True, subclass_mode_data=True,
            save_config_kwargs={"save_to_log_dir": False}, args=args, run=run,
            parser_kwargs={**quiet, **dict.fromkeys(SUBCOMMANDS, quiet)}, **kwargs,
        )
    except ArgumentError as err:
        raise ConfigError(explain(err)) from None
    except ValueError as err:  # jsonargparse wraps what a class refuses while it builds it: say just that
        cause = err
        while cause is not None and not isinstance(cause, SmacError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None
