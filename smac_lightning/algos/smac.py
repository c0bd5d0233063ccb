"""SMAC as one LightningModule: offline meta-training, then self-supervised online meta-training."""

from __future__ import annotations

import copy
import functools
from enum import IntEnum
from typing import Literal

import torch
from tensordict import TensorDict
from torch.nn.parallel import DistributedDataParallel

from smac_lightning.algos.base import MetaLearner, config_of
from smac_lightning.data.datamodule import meta_batches
from smac_lightning.data.episodes import episode_ends, episode_return, until_first_success
from smac_lightning.errors import ConfigError
from smac_lightning.losses import (
    awac_actor_loss,
    awac_weights,
    behaviour_cloning_loss,
    critic_loss,
    effective_sample_fraction,
    expectile_loss,
    kl_to_standard_normal,
    pearl_actor_loss,
    per_task_weights,
    reward_loss,
    soft_td_target,
    td_target,
    temperature_loss,
)
from smac_lightning.nn import ACTION_CLAMP, ContextEncoder, CriticEnsemble, RewardDecoder, StateValue, TanhGaussianPolicy, rows, sample
from smac_lightning.rollout import (
    LockstepEnvs,
    MetaTestProtocol,
    SelfSupervisedConfig,
    collection_envs,
    self_supervised_iteration,
)


# A row is a success from half a unit below the family's success reward: Sawyer's rewards are -1 or 0,
# the decoder's labels of online rows anything near them.
SUCCESS_MARGIN = 0.5


class Phase(IntEnum):
    OFFLINE = 0
    SELF_SUPERVISED = 1


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
        awac_clip_score: float | None = None,
        awac_whiten: bool = False,
        action_clamp: float = ACTION_CLAMP,
        value: Literal["policy", "expectile"] = "policy",
        expectile: float = 0.9,
        actor_rows: Literal["all", "until_success"] = "all",
        advantage: Literal["critic", "episode_return"] = "critic",
        kl_weight: float = 0.1,
        decoder_rows: Literal["rl", "context"] = "rl",
        lambda_pearl: float = 1.0,
        alpha: float | Literal["tuned"] = 0.0,
        actor_loss: Literal["awac", "bc"] = "awac",
        true_task_as_z: bool = False,
        offline_updates: int = 50_000,
        self_supervised: SelfSupervisedConfig = SelfSupervisedConfig(),
        evaluation: MetaTestProtocol = MetaTestProtocol(),
        compile_losses: bool | None = None,
        updates_per_batch: int = 1,
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
            awac_clip_score: cap on the advantage before the AWAC weights (the authors' ``clip_score``;
                None: no cap, their default): no row weighs more than exp(cap / beta) times one of advantage 0.
            awac_whiten: standardise the advantage over the batch before the weights, ``beta`` then in
                standard deviations (the authors' ``normalize_over_batch: whiten``; off, their default).
            action_clamp: the dataset's actions are clamped to +-``action_clamp`` before their tanh-Gaussian
                log-likelihood in eq. (2) (the authors' 0.999999). An action of exactly +-1 (a scripted
                controller's saturated command) then sits at atanh = 7.25, and where the data mixes +1 and -1
                in like states the fit widens the policy's std towards its cap instead of placing its mean.
            value: the state value behind the Bellman target and the AWAC advantage. ``policy``: the
                authors', min Q at an action drawn from the policy (V for the advantage at s, the target's
                a' at s'). ``expectile``: not in the paper, implicit Q-learning's in-sample value, a
                network V(s, z) fitted to min target-Q of the data's own actions by expectile regression;
                the target is r + gamma V(s') and the advantage Q - V(s), so no policy action is ever
                valued. Meant for sparse, absorbing successes, where Q at the policy's out-of-data actions
                overrates them and the softmax then moves eq. (2)'s weight to the rows after success
                (on Sawyer it opened no drawer either: README).
            expectile: the expectile of ``value: expectile`` (0.5: the data's mean action value; towards 1: its best).
            actor_rows: the rows eq. (2) imitates. ``all``: every row (the paper, the authors). ``until_success``:
                not in the paper, for families with a success reward (Sawyer): only the rows up to each
                episode's first success (a reward no more than half a unit below the family's success
                reward, so that the decoder's labels count too); the rest weigh 0. With sparse, lasting success the rows after
                it are many, their actions matter to nothing, and their advantage of about 0 takes eq. (2)'s
                weight from the approach (README, Sawyer). The critic still trains on every row.
            advantage: what eq. (2) weighs a row by. ``critic``: Q(s, a) - V(s) (the paper, the authors).
                ``episode_return``: not in the paper, a Monte-Carlo advantage: the discounted return of
                the row's episode from its first step (the decoder's labels for online rows) minus its mean
                over the task's rows in the meta-batch, so that each task's better episodes are imitated
                whole. For data whose controller's intent is hidden (Sawyer's scripted behaviours), where a
                one-step advantage cannot tell an approach that leads somewhere from one that does not
                (README, Sawyer). The softmax runs over each task's rows; ``awac_clip_score`` and
                ``awac_whiten`` apply to the critic's advantage only. The critic still trains, for the PEARL term.
            kl_weight: weight of KL(q(z|h) || p(z)) (averaged over tasks) against the reward error
                (averaged over rows) in eq. 3.
            decoder_rows: the rows whose rewards eq. (3)'s decoder reconstructs from z. ``rl``: the meta-batch's
                RL rows, z inferred from another draw, the context (the authors' code). ``context``: the context's own
                rows, the history z is inferred from (the paper's eq. 3). They differ where the two buffers hold
                different data: on Cheetah Velocity the RL rows are the untrained policy's, which barely move, and
                the encoder rows PEARL's later exploration, which runs, and eq. (4) must label running.
            lambda_pearl: weight of the PEARL actor loss in the self-supervised phase.
            alpha: SAC's entropy temperature, in both phases: the actor's loss gains ``alpha * log pi`` at
                its own actions and the critic's target the next action's ``-alpha * log pi`` (the authors'
                trainer has both; every SMAC config of theirs sets 0, as the paper's equations have none).
                ``tuned``: learned from 1 towards an entropy of -act_dim, as PEARL's.
            actor_loss: ``awac`` (eq. 2) or ``bc``: meta behaviour cloning, -log pi(a | s, z) of the
                dataset's actions, the paper's imitation baseline.
            true_task_as_z: diagnostic upper bound: the task's true description takes z's place in
                policy and critic (training and meta-test); no encoder is trained. ``latent_dim``
                must then be the size of the family's task description.
            offline_updates: gradient updates of the offline phase.
            self_supervised: the self-supervised phase (its budget is ``iterations`` x ``updates_per_iteration``).
            evaluation: the meta-test protocol.
            compile_losses: run the loss graph (forward and backward) through ``torch.compile``; None: on a
                GPU only, captured as CUDA graphs (``reduce-overhead``), eager on a CPU (first update ~30 s slower).
            updates_per_batch: updates per Lightning batch (K consecutive meta-batches stacked): Lightning's
                own work per batch (~2.5 ms on a CPU) is shared by K updates. The offline phase trains
                bit-identically to K = 1, and evaluations, logging and the switch fall on the same updates;
                in the self-supervised phase the batch Lightning draws ahead holds K meta-batches, so an
                iteration's new rows reach the updates a few updates later. Budgets, ``updates_per_iteration``,
                ``trainer.val_check_interval`` and ``trainer.log_every_n_steps`` must be multiples of K.
        """
        super().__init__()
        self.save_hyperparameters()
        self.encoder = ContextEncoder(obs_dim, act_dim, latent_dim, encoder_hidden, use_next_obs_in_context)
        self.decoder = RewardDecoder(obs_dim, act_dim, latent_dim, decoder_hidden)
        if not 0.0 < action_clamp < 1.0:
            raise ConfigError(f"model.action_clamp={action_clamp} must be in (0, 1): atanh(+-1) is infinite")
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, latent_dim, policy_hidden, action_clamp)
        self.critic = CriticEnsemble(obs_dim, act_dim, latent_dim, critic_hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        if alpha != "tuned" and not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ConfigError(f"model.alpha must be a temperature >= 0 or 'tuned', got {alpha!r}")
        if alpha != 0 and value == "expectile":
            raise ConfigError("model.alpha applies to the policy's value (model.value: policy), not to the expectile one")
        self.log_alpha = torch.nn.Parameter(torch.zeros(())) if alpha == "tuned" else None
        self.target_entropy = -float(act_dim)
        if value not in ("policy", "expectile"):
            raise ConfigError(f"model.value must be 'policy' or 'expectile', got {value!r}")
        if not 0.0 < expectile < 1.0:
            raise ConfigError(f"model.expectile={expectile} must be in (0, 1)")
        self.value_net = StateValue(obs_dim, latent_dim, critic_hidden) if value == "expectile" else None
        if decoder_rows not in ("rl", "context"):
            raise ConfigError(f"model.decoder_rows must be 'rl' or 'context', got {decoder_rows!r}")
        if actor_rows not in ("all", "until_success"):
            raise ConfigError(f"model.actor_rows must be 'all' or 'until_success', got {actor_rows!r}")
        if advantage not in ("critic", "episode_return"):
            raise ConfigError(f"model.advantage must be 'critic' or 'episode_return', got {advantage!r}")
        # LightningCLI may hand the nested configs over as plain dicts
        self.self_supervised = config_of(SelfSupervisedConfig, self_supervised)
        self.evaluation = config_of(MetaTestProtocol, evaluation)
        if true_task_as_z and self.self_supervised.rewards == "generated" and self.self_supervised.iterations:
            raise ConfigError(
                "model.true_task_as_z trains no encoder or decoder, so nothing can label the online data: "
                "add --model.self_supervised.rewards true (or --model.self_supervised.iterations 0)"
            )
        self.phase = Phase.OFFLINE
        self.online_transitions = 0
        self.iterations_done = 0
        self._envs: LockstepEnvs | None = None  # the self-supervised phase's envs, built on first use

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
        if self.hparams.actor_rows == "until_success":
            if dm.family.success_reward is None:
                raise ConfigError(f"model.actor_rows: until_success needs a family with a success reward; {type(dm.family).__name__} has none")
            threshold = dm.family.success_reward - SUCCESS_MARGIN
            dm.rl.annotate("before_success", lambda rows: until_first_success(rows["reward"], episode_ends(rows), threshold))
        if self.hparams.advantage == "episode_return":
            gamma = self.hparams.gamma
            dm.rl.annotate("episode_return", lambda rows: episode_return(rows["reward"], episode_ends(rows), gamma))
        if self.hparams.true_task_as_z and dm.task_dim != self.hparams.latent_dim:
            raise ConfigError(
                f"model.true_task_as_z puts the {dm.task_dim}-d task description in z's place: "
                f"set model.latent_dim: {dm.task_dim} (it is {self.hparams.latent_dim})"
            )

    # ----------------------------------------------------------------- the update

    def compute_losses(self, context: TensorDict, rl: TensorDict, task: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All of SMAC's losses for one meta-batch (``context`` ``[T, C]``, ``rl`` ``[T, B]``;
        ``task``, ``[T, task_dim]``, only with ``true_task_as_z``)."""
        hp = self.hparams
        tasks, batch = rl.batch_size
        obs, action, reward = rl["observation"], rl["action"], rl["reward"]
        next_obs, terminated = rl["next", "observation"], rl["terminated"]
        losses = {}
        if hp.true_task_as_z:
            z = z_next = task.to(obs.dtype)
        else:
            train_encoder = self.trains_encoder
            with torch.set_grad_enabled(train_encoder):
                mean, var = self.encoder.posterior(context)
                z = sample(mean, var)
            losses["kl"] = kl_to_standard_normal(mean, var).mean()
            if train_encoder:  # eq. (3): z from the context h, the rewards of the RL rows h' (or of h itself)
                decoded = context if hp.decoder_rows == "context" else rl
                predicted = self.decoder(decoded["observation"], decoded["action"], rows(z, decoded.batch_size[1]))
                losses["reward_loss"] = reward_loss(predicted, decoded["reward"])
                losses["encoder_loss"] = losses["reward_loss"] + hp.kl_weight * losses["kl"]
            z, z_next = z.detach(), sample(mean, var).detach()  # neither critic nor actor trains the encoder
        z_rows, z_next_rows = rows(z, batch), rows(z_next, batch)

        pearl = self.adds_pearl_term
        dist = self.policy(obs, z_rows)
        v_at_pi = self.value_net is None and hp.advantage == "critic"  # eq. (2)'s V from Q at a policy action
        entropic = self.log_alpha is not None or hp.alpha > 0  # a Python bool: no host sync on a tuned alpha
        alpha = self.log_alpha.exp().detach() if self.log_alpha is not None else hp.alpha
        if pearl or v_at_pi or entropic:
            a_pi, log_prob_pi = dist.rsample()
            # Q at the policy's action: V for AWAC, and for the PEARL term a gradient to the policy
            # only: the critic runs on detached weights, so one backward of the summed losses is exact.
            with torch.set_grad_enabled(pearl):
                q_pi = self.min_q_through_frozen_critic(obs, a_pi, z_rows)
        q_data = self.critic(obs, action, z_rows)  # both critics in one batched forward
        if self.value_net is None:
            v = q_pi.detach() if v_at_pi else None
            with torch.no_grad():  # a' from a second draw of the same posterior, as the authors did; the
                # target critic values it at the Q's own z: a z drawn apart would move the target with
                # the posterior's spread (on Cheetah 15x the Bellman error of the true task's)
                next_action, next_log_prob = self.policy(next_obs, z_next_rows).rsample()
                next_v = self.target_critic(next_obs, next_action, z_rows).min(0).values
        else:  # in-sample: only the data's actions are ever valued
            v = self.value_net(obs, z_rows)
            with torch.no_grad():
                q_target_data = self.target_critic(obs, action, z_rows).min(0).values
                next_v = self.value_net(next_obs, z_rows)
            losses["value_loss"] = expectile_loss(q_target_data - v, hp.expectile)
            v = v.detach()
        if entropic:
            target = soft_td_target(reward, terminated, next_v, next_log_prob, alpha, hp.gamma, hp.reward_scale)
        else:
            target = td_target(reward, terminated, next_v, hp.gamma, hp.reward_scale)
        losses["critic_loss"] = critic_loss(q_data, target)

        log_prob_data = dist.log_prob(action)
        imitated = rl["before_success"] if hp.actor_rows == "until_success" else None
        if hp.advantage == "episode_return":
            score = hp.reward_scale * rl["episode_return"]
            weights = per_task_weights(score - score.mean(1, keepdim=True), hp.awac_beta, imitated)
        else:
            weights = awac_weights(q_data.min(0).values.detach(), v, hp.awac_beta, hp.awac_clip_score, hp.awac_whiten, imitated)
        losses["awac_ess"] = effective_sample_fraction(weights).detach()
        if hp.actor_loss == "bc":
            losses["actor_loss"] = behaviour_cloning_loss(log_prob_data)
        else:
            losses["actor_loss"] = awac_actor_loss(log_prob_data, weights)
        if pearl:
            losses["pearl_loss"] = pearl_actor_loss(q_pi, log_prob_pi)
            losses["actor_loss"] = losses["actor_loss"] + hp.lambda_pearl * losses["pearl_loss"]
        if entropic:
            losses["actor_loss"] = losses["actor_loss"] + alpha * log_prob_pi.mean()
        if self.log_alpha is not None:
            losses["alpha_loss"] = temperature_loss(self.log_alpha, log_prob_pi, self.target_entropy)
            losses["alpha"] = alpha
        losses["q_mean"] = q_data.mean().detach()
        return losses

    def training_step(self, batch: TensorDict, batch_idx: int) -> None:
        """One SMAC update per meta-batch of ``batch`` (``updates_per_batch``). Offline: eq. (3) trains
        encoder and decoder, the critics their TD error, the actor eq. (2). Self-supervised: encoder
        and decoder stay frozen (unless ``self_supervised.train_encoder``) and the actor adds the
        PEARL term (``compute_losses`` says which losses the phase has)."""
        encoder_opt, critic_opt, actor_opt = self.optimizers()
        for meta_batch in meta_batches(batch):
            losses = self.compute_losses(meta_batch["context"], meta_batch["rl"], meta_batch.get("task_description", None))
            # Each loss reaches only its own network's parameters, so one backward serves all three.
            total = losses["critic_loss"] + losses.get("value_loss", 0.0) + losses["actor_loss"] + losses.get("encoder_loss", 0.0) \
                + losses.get("alpha_loss", 0.0)
            self.optimize(total, [encoder_opt] * self.trains_encoder + [critic_opt, actor_opt], losses)

    def configure_optimizers(self):
        adam = functools.partial(torch.optim.Adam, lr=self.hparams.lr, fused=True)  # one kernel per step
        return [
            adam([*self.encoder.parameters(), *self.decoder.parameters()]),
            adam([*self.critic.parameters(), *(self.value_net.parameters() if self.value_net is not None else ())]),
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
        """The actor's PEARL term (weight ``lambda_pearl``) belongs to the self-supervised phase."""
        return self.phase == Phase.SELF_SUPERVISED and self.hparams.lambda_pearl != 0

    def on_train_start(self) -> None:
        if self.phase == Phase.SELF_SUPERVISED and not self.trains_encoder:  # resumed in the phase
            self._freeze_encoder_and_decoder()

    def on_train_batch_start(self, batch, batch_idx: int):
        """The switch at ``offline_updates``; iteration ``i``'s collection when the phase has done
        ``i * updates_per_iteration`` updates. Then the base class's stop at the budget."""
        if self.phase == Phase.OFFLINE and self.updates >= self.hparams.offline_updates:
            self.switch_to_self_supervised(self.trainer.datamodule)
        in_phase = self.updates - self.hparams.offline_updates
        if self.phase == Phase.SELF_SUPERVISED and self.updates < self.total_updates \
                and in_phase >= self.iterations_done * self.self_supervised.updates_per_iteration:
            self.collect()
        return super().on_train_batch_start(batch, batch_idx)

    def switch_to_self_supervised(self, dm) -> None:
        """Encoder and decoder frozen (unless the phase trains them); held-out tasks get replay rows if
        the phase collects on them."""
        self.phase = Phase.SELF_SUPERVISED
        if not self.trains_encoder:
            self._freeze_encoder_and_decoder()
        if self.self_supervised.tasks == "test":
            dm.add_held_out_tasks()

    def _freeze_encoder_and_decoder(self) -> None:
        freeze(self.encoder, self.decoder)
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(getattr(strategy, "model", None), DistributedDataParallel):
            # DDP reduces the gradients of the parameters that required one when it was built: rebuilt
            # without the frozen ones, plain ``ddp`` needs no search for unused parameters
            strategy.model = strategy._setup_model(strategy.model.module)
            strategy._register_ddp_hooks()

    def collect(self) -> None:
        """One self-supervised iteration's data (``rollout.self_supervised_iteration``), drawn from
        seeds made of counters, not carried along, so a resumed run draws the same iterations."""
        dm = self.trainer.datamodule
        if self.self_supervised.collect:
            if self._envs is None:
                self._envs = collection_envs(dm.family, self.self_supervised)
            seed = self.trainer.global_rank * 1_000_003 + self.iterations_done * 10_007
            generator = torch.Generator().manual_seed(seed)
            self.online_transitions += self_supervised_iteration(self, dm, self._envs, generator, seed)
        self.iterations_done += 1
        self.log("train/online_transitions", float(self.online_transitions))

    def on_fit_end(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None

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


def freeze(*modules: torch.nn.Module) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()


