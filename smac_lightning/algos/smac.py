"""SMAC as one LightningModule: offline meta-training, then self-supervised online meta-training."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import torch
from tensordict import TensorDict

from smac_lightning.errors import ConfigError
from smac_lightning.algos.base import MetaLearner
from smac_lightning.evaluation import MetaTestProtocol, sample
from smac_lightning.losses import (
    awac_actor_loss,
    critic_loss,
    kl_to_standard_normal,
    pearl_actor_loss,
    reward_loss,
    td_target,
)
from smac_lightning.nn import ContextEncoder, CriticEnsemble, RewardDecoder, TanhGaussianPolicy


class Phase(IntEnum):
    OFFLINE = 0
    SELF_SUPERVISED = 1


@dataclass
class SelfSupervisedConfig:
    """The self-supervised phase.

    Each collection round picks ``tasks_per_round`` random training tasks and rolls out on
    each, reward-free, what meta-test will do: ``prior_trajectories`` with z ~ p(z), then
    ``posterior_trajectories`` with z ~ q(z | those trajectories, labelled); the trajectories of
    a stage run in lock-step. All of a task's trajectories are labelled by the frozen decoder
    with one z ~ q(z | h_offline) from ``label_context_size`` offline transitions of that task
    (eq. 4) and appended to the task's RL buffer. The prior (exploration) trajectories go to
    its encoder buffer as ``encoder_buffer`` says: ``replace`` (PEARL's collection: the
    task's contexts come from its latest exploration only, so the policy trains on the z's
    it will meet at meta-test), ``append`` (added beside the offline rows), or ``freeze``
    (not added; what the paper did on Cheetah Velocity).

    Args:
        updates_per_transition: gradient updates per collected env transition (paper: 4).
        tasks_per_round: training tasks collected on together per round (the authors: 5).
        prior_trajectories: exploration trajectories per round, z ~ p(z).
        posterior_trajectories: trajectories per round with z from the labelled exploration.
        resample_prior_every_step: draw a new z ~ p(z) at every exploration step (the authors'
            collection) instead of one per trajectory (as at meta-test).
        label_context_size: offline transitions in the history whose posterior labels a round.
        encoder_buffer: ``replace``, ``append`` or ``freeze``: what exploration does to encoder buffers.
        rewards: ``generated`` (SMAC: the frozen decoder labels the online data) or ``true`` (the
            paper's Online Oracle: the env's ground-truth rewards, everything else unchanged).
    """

    updates_per_transition: float = 4.0
    tasks_per_round: int = 1
    prior_trajectories: int = 2
    posterior_trajectories: int = 1
    resample_prior_every_step: bool = False
    label_context_size: int = 256
    encoder_buffer: Literal["replace", "append", "freeze"] = "replace"
    rewards: Literal["generated", "true"] = "generated"

    def __post_init__(self):
        if self.updates_per_transition <= 0:
            raise ConfigError(f"model.self_supervised.updates_per_transition must be > 0, got {self.updates_per_transition}")
        if self.tasks_per_round < 1:
            raise ConfigError(f"model.self_supervised.tasks_per_round must be >= 1, got {self.tasks_per_round}")
        if self.prior_trajectories < 1 or self.posterior_trajectories < 0:
            raise ConfigError(
                "model.self_supervised needs prior_trajectories >= 1 (the adapted trajectories are conditioned "
                f"on them) and posterior_trajectories >= 0, got {self.prior_trajectories} and {self.posterior_trajectories}"
            )


def _as(cls, value):
    return cls(**value) if isinstance(value, dict) else value


class SMAC(MetaLearner):
    checkpoint_key = "smac"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        latent_dim: int = 5,
        encoder_hidden: tuple[int, ...] = (200, 200, 200),
        decoder_hidden: tuple[int, ...] = (64, 64),
        policy_hidden: tuple[int, ...] = (300, 300, 300),
        critic_hidden: tuple[int, ...] = (300, 300, 300),
        use_next_obs_in_context: bool = False,
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        reward_scale: float = 5.0,
        awac_beta: float = 100.0,
        kl_weight: float = 0.1,
        lambda_pearl: float = 1.0,
        offline_updates: int = 50_000,
        self_supervised_updates: int = 50_000,
        self_supervised: SelfSupervisedConfig = SelfSupervisedConfig(),
        evaluation: MetaTestProtocol = MetaTestProtocol(),
        compile_losses: bool = False,
    ):
        """
        Args:
            obs_dim: observation size (linked from the data module).
            act_dim: action size (linked from the data module).
            latent_dim: size of the task variable z.
            encoder_hidden: hidden widths of the context encoder.
            decoder_hidden: hidden widths of the reward decoder.
            policy_hidden: hidden widths of the policy.
            critic_hidden: hidden widths of each Q-network.
            use_next_obs_in_context: encode (s, a, r, s') instead of (s, a, r).
            lr: Adam learning rate of all three optimizers.
            gamma: discount.
            tau: soft target update rate.
            reward_scale: multiplies rewards in the Bellman target.
            awac_beta: AWAC temperature (lambda in eq. 2).
            kl_weight: weight of KL(q(z|h) || p(z)) in the encoder loss.
            lambda_pearl: weight of the PEARL actor loss in the self-supervised phase.
            offline_updates: gradient updates of the offline phase.
            self_supervised_updates: gradient updates of the self-supervised phase.
            self_supervised: how the self-supervised phase collects and labels data.
            evaluation: the meta-test protocol.
            compile_losses: run the loss computation through ``torch.compile`` (first update ~30 s slower).
        """
        super().__init__()
        self.save_hyperparameters()
        self.encoder = ContextEncoder(obs_dim, act_dim, latent_dim, encoder_hidden, use_next_obs_in_context)
        self.decoder = RewardDecoder(obs_dim, act_dim, latent_dim, decoder_hidden)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, latent_dim, policy_hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, latent_dim, critic_hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # LightningCLI may hand the nested configs over as plain dicts
        self.self_supervised = _as(SelfSupervisedConfig, self_supervised)
        self.evaluation = _as(MetaTestProtocol, evaluation)
        self.phase = Phase.OFFLINE
        self.online_transitions = 0

    # ----------------------------------------------------------------- the update

    def compute_losses(self, context: TensorDict, rl: TensorDict) -> dict[str, torch.Tensor]:
        """All of SMAC's losses for one meta-batch (``context`` ``[T, C]``, ``rl`` ``[T, B]``)."""
        hp = self.hparams
        train_encoder = self.phase == Phase.OFFLINE
        with torch.set_grad_enabled(train_encoder):
            mean, var = self.encoder.posterior(context)
            z = sample(mean, var)
        tasks, batch = rl.batch_size
        z_rows = z.unsqueeze(1).expand(tasks, batch, z.shape[-1])
        obs, action, reward = rl["observation"], rl["action"], rl["reward"]
        next_obs, terminated = rl["next", "observation"], rl["terminated"]
        losses = {"kl": kl_to_standard_normal(mean, var).mean()}
        if train_encoder:  # eq. (3): reconstruct the rewards of the history z was inferred from
            context_z = z.unsqueeze(1).expand(*context.batch_size, z.shape[-1])
            predicted = self.decoder(context["observation"], context["action"], context_z)
            losses["reward_loss"] = reward_loss(predicted, context["reward"])
            losses["encoder_loss"] = losses["reward_loss"] + hp.kl_weight * losses["kl"]

        z_rows = z_rows.detach()  # neither the critic nor the actor trains the encoder
        pearl = self.phase == Phase.SELF_SUPERVISED and hp.lambda_pearl != 0
        dist = self.policy(obs, z_rows)
        a_pi, log_prob_pi = dist.rsample()
        q_data = self.critic(obs, action, z_rows)  # both critics in one batched forward
        # Q at the policy's action: V for AWAC, and for the PEARL term a gradient to the policy
        # only: the critic runs on detached weights, so one backward of the summed losses is exact.
        with torch.set_grad_enabled(pearl):
            q_pi = self.min_q_through_frozen_critic(obs, a_pi, z_rows)
        with torch.no_grad():
            next_action, _ = self.policy(next_obs, z_rows).rsample()
            next_q = self.target_critic(next_obs, next_action, z_rows).min(0).values
            target = td_target(reward, terminated, next_q, hp.gamma, hp.reward_scale)
        losses["critic_loss"] = critic_loss(q_data, target)

        losses["awac_loss"] = awac_actor_loss(dist.log_prob(action), q_data.min(0).values.detach(), q_pi.detach(), hp.awac_beta)
        losses["actor_loss"] = losses["awac_loss"]
        if pearl:
            losses["pearl_loss"] = pearl_actor_loss(q_pi, log_prob_pi)
            losses["actor_loss"] = losses["actor_loss"] + hp.lambda_pearl * losses["pearl_loss"]
        losses["q_mean"] = q_data.mean().detach()
        return losses

    def update(self, batch: TensorDict, optimizers, backward) -> dict[str, torch.Tensor]:
        """One SMAC update on a meta-batch; ``backward`` is Lightning's ``manual_backward`` in training."""
        if self.phase == Phase.SELF_SUPERVISED:
            optimizers = optimizers[1:]  # the encoder and decoder are frozen
        losses = self.compute_losses(batch["context"], batch["rl"])
        # Each loss reaches only its own network's parameters, so one backward serves all three.
        total = losses["critic_loss"] + losses["actor_loss"] + losses.get("encoder_loss", 0.0)
        return self.apply_update(total, losses, optimizers, backward)

    def configure_optimizers(self):
        adam = functools.partial(torch.optim.Adam, lr=self.hparams.lr, fused=True)  # one kernel per step
        return [
            adam([*self.encoder.parameters(), *self.decoder.parameters()]),
            adam(self.critic.parameters()),
            adam(self.policy.parameters()),
        ]

    # ----------------------------------------------------------------- budget and phase

    def configure_callbacks(self):
        from smac_lightning.callbacks.phase import SelfSupervisedPhase

        return [SelfSupervisedPhase()]

    def budgets(self) -> dict[str, int]:
        return {"model.offline_updates": self.hparams.offline_updates, "model.self_supervised_updates": self.hparams.self_supervised_updates}

    def counter_state(self) -> dict:
        return {"phase": int(self.phase), "updates": self.updates, "online_transitions": self.online_transitions}

    def load_counter_state(self, state: dict) -> None:
        self.phase, self.updates, self.online_transitions = Phase(state["phase"]), state["updates"], state["online_transitions"]

    def progress_metrics(self) -> dict[str, float]:
        return {"progress/updates": float(self.updates), "progress/phase": float(self.phase)}
