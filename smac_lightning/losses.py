"""SMAC's losses as pure functions, one per equation of the paper.

Shapes: ``[tasks, batch, 1]`` per-transition values, ``[critics, tasks, batch, 1]``
for the Q ensemble, ``[tasks, d_z]`` for posteriors.
"""

from __future__ import annotations

import torch


def kl_to_standard_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, I)) of diagonal Gaussians, summed over the last dim."""
    return 0.5 * (var + mean.pow(2) - 1.0 - var.log()).sum(-1)


def td_target(reward, terminated, next_q, gamma: float, reward_scale: float) -> torch.Tensor:
    """Bootstrapped target of eq. (1); ``next_q`` is min over the target critics at a' ~ pi(s', z)."""
    return reward_scale * reward + gamma * (~terminated).to(next_q.dtype) * next_q


def soft_td_target(reward, terminated, next_q, next_log_prob, alpha, gamma: float, reward_scale: float) -> torch.Tensor:
    """SAC's target (PEARL's critic): the next state's value carries the entropy bonus -alpha * log pi(a'|s')."""
    return td_target(reward, terminated, next_q - alpha * next_log_prob, gamma, reward_scale)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's entropy tuning: raises alpha while the policy's entropy is below ``target_entropy``."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (1): squared Bellman error, averaged over transitions and summed over the ensemble."""
    return (q - target.detach()).pow(2).flatten(1).mean(1).sum()


def awac_weights(q: torch.Tensor, v: torch.Tensor, beta: float, clip_score: float | None = None,
                 whiten: bool = False, mask: torch.Tensor | None = None) -> torch.Tensor:
    """exp((Q - V) / beta) normalised as a softmax over the whole batch, times the batch size.

    ``clip_score`` caps the advantage first, so that no row weighs more than exp(clip / beta)
    times a row of advantage 0; ``whiten`` divides the advantage's deviation from its batch mean by
    its batch std first, so that ``beta`` is in standard deviations (the authors' two options).
    ``mask`` (shaped as ``q``): rows where it is False weigh 0, the others share the softmax.
    """
    advantage = (q - v).flatten()
    if clip_score is not None:
        advantage = advantage.clamp(max=clip_score)
    if whiten:
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-5)
    if mask is not None:
        advantage = advantage.masked_fill(~mask.flatten(), float("-inf"))
    return (torch.softmax(advantage / beta, 0) * advantage.numel()).view_as(q)


def per_task_weights(advantage: torch.Tensor, beta: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """exp(A / beta) normalised as a softmax over each task's rows of ``advantage`` ``[T, B, 1]``, times
    ``B``: every task weighs the same in eq. (2), whatever its advantages' scale. Rows where ``mask`` is
    False weigh 0; a task with none left weighs 0."""
    if mask is not None:
        advantage = advantage.masked_fill(~mask, float("-inf"))
    return (torch.softmax(advantage / beta, 1) * advantage.shape[1]).nan_to_num(0.0)


def awac_actor_loss(log_prob: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. (2): the dataset's actions' log-likelihood weighted by ``awac_weights`` (held constant)."""
    if weights.shape != log_prob.shape:  # [B, 1] * [B] would broadcast to [B, B]: plain cloning, silently
        raise ValueError(f"awac_actor_loss: weights {tuple(weights.shape)} and log_prob {tuple(log_prob.shape)} must have one shape")
    return -(log_prob * weights.detach()).mean()


def behaviour_cloning_loss(log_prob: torch.Tensor) -> torch.Tensor:
    """Meta behaviour cloning, the paper's imitation baseline: -log pi(a | s, z) of the dataset's actions."""
    return -log_prob.mean()


def effective_sample_fraction(weights: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / (n sum w^2): 1 when the weights are uniform, 1/n when one row carries them all."""
    w = weights.flatten()
    return w.sum().pow(2) / (w.numel() * w.pow(2).sum())


def pearl_actor_loss(q_new: torch.Tensor, log_prob_new: torch.Tensor, entropy_weight: float = 0.0) -> torch.Tensor:
    """PEARL's (SAC's) reparameterised actor loss at a ~ pi(s, z): E[alpha * log pi - Q]."""
    return (entropy_weight * log_prob_new - q_new).mean()


def reward_loss(predicted: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Eq. (3)'s reconstruction term as the authors trained it: squared error averaged over every
    row ``[T, n, 1]`` (so ``kl_weight`` weighs one task's KL against one row's error)."""
    return (predicted - reward).pow(2).mean()
