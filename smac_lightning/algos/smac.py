"""SMAC as one LightningModule: offline meta-training, then self-supervised online meta-training."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Literal, NamedTuple

import lightning as L
import torch
from tensordict import TensorDict

from smac_lightning.algos.actor import ActorConfig
from smac_lightning.algos.base import MetaLearner, config_of
from smac_lightning.callbacks.self_supervised_phase import Phase, SelfSupervisedPhase, freeze
from smac_lightning.data.datamodule import meta_batches
from smac_lightning.data.episodes import episode_ends, episode_return, until_first_success
from smac_lightning.errors import ConfigError
from smac_lightning.losses import (
    awac_actor_loss,
    awac_weights,
    behaviour_cloning_loss,
    critic_loss,
    effective_sample_fraction,
    kl_to_standard_normal,
    pearl_actor_loss,
    per_task_weights,
    reward_loss,
    soft_td_target,
    td_target,
    temperature_loss,
)
from smac_lightning.nn import ContextEncoder, CriticEnsemble, RewardDecoder, TanhGaussianPolicy, rows, sample
from smac_lightning.rollout import SelfSupervisedConfig


# A row is a success from half a unit below the family's success reward: Sawyer's rewards are -1 or 0,
# the decoder's labels of online rows anything near them.
SUCCESS_MARGIN = 0.5


class OwnAction(NamedTuple):
    """The policy's own action at the meta-batch's states, its log-probability and min Q there."""

    action: torch.Tensor
    log_prob: torch.Tensor
    q: torch.Tensor


@dataclass
class DecoderConfig:
    """The reward decoder of eq. (3).

    Args:
        hidden: its hidden widths.
        rows: the rows it reconstructs: ``rl``, the RL rows (the authors); ``context``, the context's own (the paper).
    """

    hidden: tuple[int, ...] = (64, 64)
    rows: Literal["rl", "context"] = "rl"

    def __post_init__(self):
        if self.rows not in ("rl", "context"):
            raise ConfigError(f"model.decoder.rows must be 'rl' or 'context', got {self.rows!r}")
        self.hidden = tuple(self.hidden)


class SMAC(MetaLearner):
    checkpoint_key = "smac"

    def __init__(
        self,
        decoder: DecoderConfig = DecoderConfig(),
        actor: ActorConfig = ActorConfig(),
        true_task_as_z: bool = False,
        offline_updates: int = 50_000,
        self_supervised: SelfSupervisedConfig = SelfSupervisedConfig(),
        updates_per_batch: int = 1,
        **shared,
    ):
        """
        Args:
            decoder: the reward decoder of eq. (3): its widths and the rows it reconstructs.
            actor: the actor's objective: eq. (2), its variants and the PEARL term.
            true_task_as_z: diagnostic upper bound: the task's description in z's place; ``latent_dim`` its size.
            offline_updates: gradient updates of the offline phase.
            self_supervised: the self-supervised phase (its budget is ``iterations`` x ``updates_per_iteration``).
            updates_per_batch: updates per Lightning batch (K meta-batches stacked); budgets and intervals must be multiples of K.
            shared: the options every learner has (``MetaLearner``: sizes, learning rate, discount, meta-test).
        """
        super().__init__(**shared)  # saves every option, this class's too, as hparams
        hp = self.hparams
        obs_dim, act_dim, latent_dim = hp.obs_dim, hp.act_dim, hp.latent_dim
        self.actor = config_of(ActorConfig, actor)  # LightningCLI may hand nested configs over as plain dicts
        self.self_supervised = config_of(SelfSupervisedConfig, self_supervised)
        self.encoder = ContextEncoder(obs_dim, act_dim, latent_dim, hp.encoder_hidden)
        self.decoding = config_of(DecoderConfig, decoder)
        self.decoder = RewardDecoder(obs_dim, act_dim, latent_dim, self.decoding.hidden)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, latent_dim, hp.policy_hidden, self.actor.action_clamp)
        self.critic = CriticEnsemble(obs_dim, act_dim, latent_dim, hp.critic_hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.zeros(())) if self.actor.alpha == "tuned" else None
        self.target_entropy = -float(act_dim)
        if true_task_as_z and self.self_supervised.rewards == "generated" and self.self_supervised.iterations:
            raise ConfigError(
                "model.true_task_as_z trains no encoder or decoder, so nothing can label the online data: "
                "add --model.self_supervised.rewards true (or --model.self_supervised.iterations 0)"
            )
        self.phase = Phase.OFFLINE
        self.online_transitions = 0
        self.iterations_done = 0

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._trainer is None:  # set up by hand, outside a Trainer
            return
        dm = self.trainer.datamodule
        dm.online_from_batch = self.hparams.offline_updates  # the self-supervised phase's RL batch size
        dm.online_contexts = self.self_supervised.contexts == "online"  # ... and its contexts
        if dm.online_contexts and dm.encoder is not dm.rl and self.self_supervised.encoder_buffer == "freeze":
            raise ConfigError(
                "model.self_supervised.contexts: online needs online rows in the context buffer, and with "
                "data.encoder_buffer: separate and model.self_supervised.encoder_buffer: freeze it gets none"
            )
        if self.hparams.true_task_as_z:
            freeze(self.encoder, self.decoder)  # never trained: kept out of DDP's gradient reduction
        if self.actor.rows == "until_success":
            if dm.family.success_reward is None:
                raise ConfigError(f"model.actor.rows: until_success needs a family with a success reward; {type(dm.family).__name__} has none")
            threshold = dm.family.success_reward - SUCCESS_MARGIN
            dm.rl.annotate("before_success", lambda rows: until_first_success(rows["reward"], episode_ends(rows), threshold))
        if self.actor.advantage == "episode_return":
            gamma = self.hparams.gamma
            dm.rl.annotate("episode_return", lambda rows: episode_return(rows["reward"], episode_ends(rows), gamma))
        if self.hparams.true_task_as_z and dm.task_dim != self.hparams.latent_dim:
            raise ConfigError(
                f"model.true_task_as_z puts the {dm.task_dim}-d task description in z's place: "
                f"set model.latent_dim: {dm.task_dim} (it is {self.hparams.latent_dim})"
            )

    # ----------------------------------------------------------------- the update

    # Each network's loss; their sum is what one backward trains (components and measures are logged only)
    NETWORK_LOSSES = ("encoder_loss", "critic_loss", "actor_loss", "alpha_loss")

    def compute_losses(self, context: TensorDict, rl: TensorDict, task: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All of SMAC's losses for one meta-batch (``context`` ``[T, C]``, ``rl`` ``[T, B]``;
        ``task``, ``[T, task_dim]``, only with ``true_task_as_z``)."""
        alpha = self.alpha  # once per update: exp of a tuned log-alpha
        losses, z, z_next = self.encoder_losses(context, rl, task)
        obs, batch = rl["observation"], rl.batch_size[1]
        z_rows, z_next_rows = rows(z, batch), rows(z_next, batch)
        dist = self.policy(obs, z_rows)
        own = self.policy_action(dist, obs, z_rows)
        q_data, critic_losses = self.critic_losses(rl, z_rows, z_next_rows, alpha)
        v = own.q.detach() if self.actor.advantage == "critic" else None  # V(s) = min Q at a policy action
        weights = self.row_weights(rl, q_data.min(0).values.detach(), v)
        return {**losses, **critic_losses, **self.actor_losses(dist, rl["action"], weights, own, alpha), "q_mean": q_data.mean().detach()}

    def encoder_losses(self, context: TensorDict, rl: TensorDict, task: torch.Tensor | None):
        """Eq. (3) where the phase trains the encoder, and two draws of z from the posterior of
        ``context``: one for the Q regressed and its target, one for the next action (the authors')."""
        if self.hparams.true_task_as_z:
            z = task.to(rl["observation"].dtype)
            return {}, z, z
        train_encoder = self.trains_encoder
        with torch.set_grad_enabled(train_encoder):
            mean, var = self.encoder.posterior(context)
            z = sample(mean, var)
        losses = {"kl": kl_to_standard_normal(mean, var).mean()}
        if train_encoder:  # z from the context h, the rewards of the RL rows h' (or of h itself)
            decoded = context if self.decoding.rows == "context" else rl
            predicted = self.decoder(decoded["observation"], decoded["action"], rows(z, decoded.batch_size[1]))
            losses["reward_loss"] = reward_loss(predicted, decoded["reward"])
            losses["encoder_loss"] = losses["reward_loss"] + self.hparams.kl_weight * losses["kl"]
        return losses, z.detach(), sample(mean, var).detach()  # neither critic nor actor trains the encoder

    def policy_action(self, dist, obs: torch.Tensor, z_rows: torch.Tensor) -> OwnAction | None:
        """The policy's own action, its log-probability and min Q there, where a loss needs them (the
        PEARL term, the critic's V, an entropy term); else None. The critic runs on detached weights,
        so the PEARL term's gradient reaches the policy only and one backward of the sum is exact."""
        through_q = self.adds_pearl_term or self.actor.loss == "reparam"
        if not (through_q or self.actor.advantage == "critic" or self.actor.entropic):
            return None
        action, log_prob = dist.rsample()
        with torch.set_grad_enabled(through_q):
            return OwnAction(action, log_prob, self.min_q_through_frozen_critic(obs, action, z_rows))

    def critic_losses(self, rl: TensorDict, z_rows: torch.Tensor, z_next_rows: torch.Tensor, alpha) -> tuple[torch.Tensor, dict]:
        """Both critics' TD error in one batched forward. a' comes from the second draw of z; the target
        critic values it at the regressed Q's own z, as the authors' code: a z drawn apart would move the
        target with the posterior's spread (on Cheetah 15x the Bellman error of the true task's)."""
        hp = self.hparams
        q_data = self.critic(rl["observation"], rl["action"], z_rows)
        with torch.no_grad():
            next_action, next_log_prob = self.policy(rl["next", "observation"], z_next_rows).rsample()
            next_v = self.target_critic(rl["next", "observation"], next_action, z_rows).min(0).values
            if self.actor.entropic and self.actor.soft_target:
                target = soft_td_target(rl["reward"], rl["terminated"], next_v, next_log_prob, alpha, hp.gamma, hp.reward_scale)
            else:
                target = td_target(rl["reward"], rl["terminated"], next_v, hp.gamma, hp.reward_scale)
        return q_data, {"critic_loss": critic_loss(q_data, target)}

    def row_weights(self, rl: TensorDict, q: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        """Eq. (2)'s weight of each row: a softmax of its advantage over the meta-batch (per task with
        ``advantage: episode_return``), rows after success weighing 0 with ``rows: until_success``."""
        actor = self.actor
        imitated = rl["before_success"] if actor.rows == "until_success" else None
        if actor.advantage == "episode_return":
            score = self.hparams.reward_scale * rl["episode_return"]
            return per_task_weights(score - score.mean(1, keepdim=True), actor.beta, imitated)
        return awac_weights(q, v, actor.beta, actor.clip_score, actor.whiten, imitated)

    def actor_losses(self, dist, action: torch.Tensor, weights: torch.Tensor, own: OwnAction | None, alpha) -> dict[str, torch.Tensor]:
        """Eq. (2) (or cloning, or -Q alone), plus the PEARL term in the self-supervised phase and SAC's entropy term."""
        actor = self.actor
        losses = {"awac_ess": effective_sample_fraction(weights).detach()}
        if actor.loss == "reparam":  # the ablations: PEARL's term is the whole loss, in both phases
            losses["pearl_loss"] = loss = pearl_actor_loss(own.q, own.log_prob)
        elif actor.loss == "bc":
            loss = behaviour_cloning_loss(dist.log_prob(action))
        else:
            loss = awac_actor_loss(dist.log_prob(action), weights)
        if self.adds_pearl_term and actor.loss != "reparam":
            losses["pearl_loss"] = pearl_actor_loss(own.q, own.log_prob)
            loss = loss + actor.lambda_pearl * losses["pearl_loss"]
        if actor.entropic:
            loss = loss + alpha * own.log_prob.mean()
        if self.log_alpha is not None:
            losses["alpha_loss"] = temperature_loss(self.log_alpha, own.log_prob, self.target_entropy)
            losses["alpha"] = alpha
        return {"actor_loss": loss, **losses}

    @property
    def alpha(self) -> torch.Tensor | float:
        """SAC's temperature, detached where it is learned (a Python float otherwise: no host sync)."""
        return self.log_alpha.exp().detach() if self.log_alpha is not None else self.actor.alpha

    def training_step(self, batch: TensorDict, batch_idx: int) -> None:
        """One SMAC update per meta-batch of ``batch`` (``updates_per_batch``). Offline: eq. (3) trains
        encoder and decoder, the critics their TD error, the actor eq. (2). Self-supervised: encoder
        and decoder stay frozen (unless ``self_supervised.train_encoder``) and the actor adds the
        PEARL term (``compute_losses`` says which losses the phase has)."""
        encoder_opt, critic_opt, actor_opt = self.optimizers()
        for meta_batch in meta_batches(batch):
            losses = self.compute_losses(meta_batch["context"], meta_batch["rl"], meta_batch.get("task_description", None))
            # Each loss reaches only its own network's parameters, so one backward serves all three.
            total = sum(losses[name] for name in self.NETWORK_LOSSES if name in losses)
            self.optimize(total, [encoder_opt] * self.trains_encoder + [critic_opt, actor_opt], losses)

    def configure_optimizers(self):
        adam = functools.partial(torch.optim.Adam, lr=self.hparams.lr, fused=True)  # one kernel per step
        return [
            adam([*self.encoder.parameters(), *self.decoder.parameters()]),
            adam(self.critic.parameters()),
            # a tuned temperature steps with the actor: Adam's update of each parameter is its own
            adam([*self.policy.parameters(), *([self.log_alpha] if self.log_alpha is not None else [])]),
        ]

    # ----------------------------------------------------------------- the phase

    @property
    def trains_encoder(self) -> bool:
        """Eq. (3) trains encoder and decoder in the offline phase, in the self-supervised one only with
        ``self_supervised.train_encoder``, never with the true task as z."""
        in_phase = self.phase == Phase.OFFLINE or self.self_supervised.train_encoder
        return in_phase and not self.hparams.true_task_as_z

    @property
    def adds_pearl_term(self) -> bool:
        """The actor's PEARL term (weight ``actor.lambda_pearl``) belongs to the self-supervised phase."""
        return self.phase == Phase.SELF_SUPERVISED and self.actor.lambda_pearl != 0

    def configure_callbacks(self) -> list[L.Callback]:
        return [SelfSupervisedPhase()]  # the switch, the freeze and the collection schedule

    # ----------------------------------------------------------------- budget and counters

    def budgets(self) -> dict[str, int]:
        return {
            "model.offline_updates": self.hparams.offline_updates,
            "model.self_supervised (iterations x updates_per_iteration)": self.self_supervised.updates,
        }

    def update_boundaries(self) -> dict[str, int]:
        collections = self.self_supervised.iterations > 0  # each iteration's collection runs between batches
        return {"model.self_supervised.updates_per_iteration": self.self_supervised.updates_per_iteration} if collections else {}

    def counter_state(self) -> dict:
        return {
            "phase": int(self.phase), "updates": self.updates,
            "online_transitions": self.online_transitions, "iterations_done": self.iterations_done,
        }

    def load_counter_state(self, state: dict) -> None:
        self.phase, self.updates = Phase(state["phase"]), state["updates"]
        self.online_transitions, self.iterations_done = state["online_transitions"], state["iterations_done"]

    def progress_metrics(self) -> dict[str, float]:
        return {"progress/updates": float(self.updates), "progress/phase": float(self.phase)}

