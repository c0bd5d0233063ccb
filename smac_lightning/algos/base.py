"""What every meta-learner here shares: an update budget, target critics, NaN checks, exact resume."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

from smac_lightning.algos.evaluation import MetaEvaluation
from smac_lightning.errors import ConfigError, TrainingDiverged
from smac_lightning.rollout import MetaTestProtocol, ZSampling


def config_of(cls, value):
    """A nested config as its dataclass: LightningCLI may hand it over as a plain dict."""
    return cls(**value) if isinstance(value, dict) else value


def compile_mode(setting: bool | None, device_type: str) -> str | None:
    """``torch.compile``'s mode for the loss graph, or None for eager. ``setting`` None (the default):
    captured as CUDA graphs on a GPU, where an update at these sizes is bound by kernel launches, and
    eager on a CPU, where compiling measured slower (``benchmarks/README.md``); True: compiled on any
    device; False: eager."""
    if setting is False or (setting is None and device_type != "cuda"):
        return None
    return "reduce-overhead" if device_type == "cuda" else "default"


class MetaLearner(MetaEvaluation, L.LightningModule):
    """Base of SMAC and PEARL: ``critic``/``target_critic`` networks and a budget counted in updates.

    Subclasses write their update in ``training_step`` (naming their optimizers and losses, then
    ``optimize``), define ``budgets()`` (config name -> updates, summing to the run's budget) and
    keep their counters in ``counter_state()``.
    """

    checkpoint_key = "counters"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        latent_dim: int = 5,
        encoder_hidden: tuple[int, ...] = (200, 200, 200),
        policy_hidden: tuple[int, ...] = (300, 300, 300),
        critic_hidden: tuple[int, ...] = (300, 300, 300),
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        reward_scale: float = 5.0,
        kl_weight: float = 0.1,
        evaluation: MetaTestProtocol = MetaTestProtocol(),
        z: ZSampling = ZSampling(),
        compile_losses: bool | None = None,
    ):
        """The options SMAC and PEARL share (each subclass saves them with its own).

        Args:
            obs_dim: observation size (linked from the data module).
            act_dim: action size (linked from the data module).
            latent_dim: size of the task variable z.
            encoder_hidden: hidden widths of the context encoder.
            policy_hidden: hidden widths of the policy.
            critic_hidden: hidden widths of each Q-network.
            lr: Adam learning rate of every optimizer.
            gamma: discount.
            tau: soft target update rate.
            reward_scale: multiplies rewards in the Bellman target.
            kl_weight: weight of KL(q(z|h) || p(z)) (averaged over tasks) in the encoder's loss.
            evaluation: the meta-test protocol.
            z: how z is drawn where the agent acts, in meta-test and in SMAC's collection alike.
            compile_losses: ``torch.compile`` the loss graph; None: on a GPU only (CUDA graphs), eager on a CPU.
        """
        super().__init__()
        self.save_hyperparameters()  # Lightning gathers the subclass's __init__ arguments with these
        self.evaluation = config_of(MetaTestProtocol, evaluation)  # LightningCLI may hand it over as a dict
        self.z = config_of(ZSampling, z)
        self.automatic_optimization = False
        self.updates = 0  # gradient updates done; Lightning's global_step counts optimizer steps instead
        self.evaluations: list[dict] = []  # this process's meta-test results, for the end-of-run report
        self._last_losses: dict[str, torch.Tensor] = {}

    def budgets(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def updates_per_batch(self) -> int:
        """Updates per Lightning batch (``model.updates_per_batch`` where the learner has it): a
        batch stacks that many meta-batches, so Lightning's own work per batch is shared by them."""
        return int(self.hparams.get("updates_per_batch", 1))

    def setup(self, stage: str) -> None:
        if self._trainer is not None and stage == "fit":
            self._take_updates_per_batch()
        device = self._trainer.strategy.root_device.type if self._trainer is not None else "cpu"
        mode = compile_mode(self.hparams.get("compile_losses"), device)
        if mode is None or getattr(self, "_losses_compiled", False):
            return
        compiled = torch.compile(self.compute_losses, mode=mode)  # forward and backward of the whole loss graph
        if mode == "reduce-overhead":  # CUDA graphs: one replay per update instead of hundreds of launches

            def captured(*args):
                # the previous update's outputs are read no more (its losses were checked and logged)
                torch.compiler.cudagraph_mark_step_begin()
                return compiled(*args)

            self.compute_losses = captured
        else:
            self.compute_losses = compiled
        self._losses_compiled = True

    def _take_updates_per_batch(self) -> None:
        """K updates per batch: the data module stacks K meta-batches per batch, and the Trainer's
        ``val_check_interval`` and ``log_every_n_steps``, which the configs give in updates while
        Lightning counts batches, are divided by K once per Trainer, after checking that K divides
        them and every budget (evaluations, logging and the phase switch then fall on the same
        updates as with K = 1)."""
        k, trainer = self.updates_per_batch, self.trainer
        if k < 1:
            raise ConfigError(f"model.updates_per_batch={k} must be >= 1")
        trainer.datamodule.updates_per_batch = k
        if k == 1 or getattr(trainer, "_intervals_in_batches", False):
            return
        counts = {"trainer.log_every_n_steps": trainer.log_every_n_steps, **self.budgets(), **self.update_boundaries()}
        if isinstance(trainer.val_check_interval, int):
            counts["trainer.val_check_interval"] = trainer.val_check_interval
        for name, value in counts.items():
            if value % k:
                raise ConfigError(
                    f"{name}={value} is not a multiple of model.updates_per_batch={k}: a batch of {k} updates "
                    f"would straddle it. Make it a multiple, or set model.updates_per_batch 1."
                )
        if isinstance(trainer.val_check_interval, int):
            trainer.val_check_interval //= k
        trainer.log_every_n_steps //= k
        trainer._intervals_in_batches = True

    def update_boundaries(self) -> dict[str, int]:
        """Update counts, besides the budgets, at which the learner acts between batches (config name -> count)."""
        return {}

    @property
    def total_updates(self) -> int:
        return sum(self.budgets().values())

    def counter_state(self) -> dict:
        return {"updates": self.updates}

    def load_counter_state(self, state: dict) -> None:
        self.updates = state["updates"]

    def progress_metrics(self) -> dict[str, float]:
        return {"progress/updates": float(self.updates)}

    def optimize(self, total: torch.Tensor, optimizers, losses: dict[str, torch.Tensor]) -> None:
        """One backward of ``total`` (each summand reaches only its own networks), a step of each of
        ``optimizers``, the target critics' soft update; ``losses`` are logged and kept for the NaN
        check (no host sync here)."""
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(total)
        for optimizer in optimizers:
            optimizer.step()
        self.soft_update_target()
        self.updates += 1
        self._last_losses = losses
        if self.logs_this_update:
            self.log_at_update({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=True, on_epoch=False)

    @property
    def logs_this_update(self) -> bool:
        """Losses reach the logger every ``trainer.log_every_n_steps`` updates (as configured; the
        Trainer holds it in batches): Lightning's bookkeeping of a logged value costs about as much
        as a small update, so the other updates skip it."""
        every = self._trainer.log_every_n_steps * self.updates_per_batch if self._trainer is not None else 0
        return every > 0 and self.updates % every == 0

    def min_q_through_frozen_critic(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """min over the critics of Q(s, a, z) on detached critic weights: an actor loss built on it
        sends gradient to the action (and so the policy) but never to the critic."""
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        return torch.func.functional_call(self.critic, frozen, (obs, action, z)).min(0).values

    @torch.no_grad()
    def soft_update_target(self) -> None:
        torch._foreach_lerp_(list(self.target_critic.parameters()), list(self.critic.parameters()), self.hparams.tau)

    def on_fit_start(self) -> None:
        interval = self.trainer.val_check_interval  # in batches: in updates below
        if isinstance(interval, int):
            interval *= self.updates_per_batch
        for name, value in self.budgets().items():
            if value < 0:
                raise ConfigError(f"{name}={value} must be >= 0")
            if isinstance(interval, int) and value % interval:
                raise ConfigError(
                    f"{name}={value} is not a multiple of trainer.val_check_interval={interval}: meta-test "
                    f"evaluation must fall on the phase switch and on the last update. Make it a multiple."
                )
        if self.trainer.max_steps != -1:
            names = " + ".join(self.budgets())
            raise ConfigError(
                f"trainer.max_steps={self.trainer.max_steps} is set, but the budget is counted in updates "
                f"({names}; Lightning counts each optimizer's steps). Remove trainer.max_steps."
            )

    def on_train_batch_start(self, batch, batch_idx: int):
        if self.updates >= self.total_updates:
            self.trainer.should_stop = True
            return -1
        return None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.logs_this_update:  # what was just logged is checked
            self.check_finite()

    def on_validation_start(self) -> None:
        if self.trainer.training:
            self.check_finite()  # before the checkpoint that follows this evaluation is written

    def check_finite(self) -> None:
        bad = [f"train/{k}" for k, v in self._last_losses.items() if not torch.isfinite(v).all()]
        bad += [name for name, p in self.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            where = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none yet"
            raise TrainingDiverged(
                f"{', '.join(bad[:5])} became NaN or infinite by update {self.updates}. Training stopped; "
                f"the last good checkpoint is {where}. Lower model.lr or model.reward_scale, check the "
                f"rewards, then resume with --ckpt_path."
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.checkpoint_key] = self.counter_state()
        # z samples, policy noise and exploration draw from the global generators: a resumed run
        # must continue their streams, not restart them from the seed.
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached}
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.load_counter_state(checkpoint[self.checkpoint_key])
        # ``_trainer``: ``load_from_checkpoint`` runs this with no Trainer attached (``trainer`` would raise).
        if "rng" in checkpoint and self._trainer is not None and self._trainer.state.fn == "fit":
            torch.set_rng_state(checkpoint["rng"]["torch"])
            n = checkpoint["rng"]["numpy"]
            np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
            random.setstate(checkpoint["rng"]["python"])
