"""SMAC's phase as a Lightning callback: the switch to self-supervision, the freeze of encoder and
decoder that comes with it, and the phase's collection schedule.

``SMAC.configure_callbacks`` returns it, so every Trainer that fits SMAC has it, from the CLI or
built by hand. The module keeps what the update needs (its ``phase`` and the gates read from it:
``trains_encoder``, ``adds_pearl_term``) and its counters (checkpointed with the module, so a resumed
run collects the same iterations); this callback decides when they change and steps the envs.
"""

from __future__ import annotations

import time
from enum import IntEnum

import lightning as L
import torch
from torch.nn.parallel import DistributedDataParallel

from smac_lightning.rollout import CollectorEnvs, collection_envs, self_supervised_iteration


class Phase(IntEnum):
    OFFLINE = 0
    SELF_SUPERVISED = 1


def freeze(*modules: torch.nn.Module) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()


def freeze_encoder_and_decoder(smac, strategy=None) -> None:
    freeze(smac.encoder, smac.decoder)
    if isinstance(getattr(strategy, "model", None), DistributedDataParallel):
        # DDP reduces the gradients of the parameters that required one when it was built: rebuilt
        # without the frozen ones, plain ``ddp`` needs no search for unused parameters
        strategy.model = strategy._setup_model(strategy.model.module)
        strategy._register_ddp_hooks()


def switch_to_self_supervised(smac, datamodule, strategy=None) -> None:
    """Encoder and decoder frozen (unless the phase trains them); held-out tasks get replay rows if
    the phase collects on them."""
    smac.phase = Phase.SELF_SUPERVISED
    if not smac.trains_encoder:
        freeze_encoder_and_decoder(smac, strategy)
    if smac.self_supervised.tasks == "test":
        datamodule.add_held_out_tasks()


class SelfSupervisedPhase(L.Callback):
    """The switch at ``offline_updates``; iteration ``i``'s collection once the phase has done
    ``i * updates_per_iteration`` updates, before the update that would exceed it."""

    def __init__(self):
        self._envs: CollectorEnvs | None = None  # the phase's envs, built on first use
        self._phase_started: float | None = None  # this process's wall clock at the switch (or the resume)
        self._collecting, self._collections = 0.0, 0  # seconds spent collecting since then, and how many times

    def on_train_start(self, trainer: L.Trainer, smac) -> None:
        if smac.phase == Phase.SELF_SUPERVISED:  # resumed in the phase
            self._phase_started = time.perf_counter()
            if not smac.trains_encoder:
                freeze_encoder_and_decoder(smac, trainer.strategy)

    def on_train_batch_start(self, trainer: L.Trainer, smac, batch, batch_idx: int) -> None:
        # runs before the module's own hook, which stops the fit at the budget
        if smac.phase == Phase.OFFLINE and smac.updates >= smac.hparams.offline_updates:
            switch_to_self_supervised(smac, trainer.datamodule, trainer.strategy)
            self._phase_started = time.perf_counter()
        in_phase = smac.updates - smac.hparams.offline_updates
        if smac.phase == Phase.SELF_SUPERVISED and smac.updates < smac.total_updates \
                and in_phase >= smac.iterations_done * smac.self_supervised.updates_per_iteration:
            self.collect(trainer, smac)

    def collect(self, trainer: L.Trainer, smac) -> None:
        """One self-supervised iteration's data (``rollout.self_supervised_iteration``), drawn from
        seeds made of counters, not carried along, so a resumed run draws the same iterations."""
        started = time.perf_counter()
        if smac.self_supervised.collect:
            if self._envs is None:
                self._envs = collection_envs(trainer.datamodule.family, smac.self_supervised, trainer.datamodule.env_processes)
            seed = trainer.global_rank * 1_000_003 + smac.iterations_done * 10_007
            generator = torch.Generator().manual_seed(seed)
            smac.online_transitions += self_supervised_iteration(smac, trainer.datamodule, self._envs, generator, seed)
        smac.iterations_done += 1
        self._collecting += time.perf_counter() - started
        self._collections += 1
        smac.log("train/online_transitions", float(smac.online_transitions))
        if self._collections > 1:  # the share of the phase's wall time so far (meta-test included) spent collecting
            smac.log("perf/collection_share", self._collecting / max(time.perf_counter() - self._phase_started, 1e-9))

    def teardown(self, trainer: L.Trainer, smac, stage: str) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, smac, exception: BaseException) -> None:
        self._close()  # a fit that fails skips teardown

    def _close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None
