"""SMAC's actor objective and its variants in one config: eq. (2), the PEARL term, the ablations' kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smac_lightning.errors import ConfigError
from smac_lightning.nn import ACTION_CLAMP


@dataclass
class ActorConfig:
    """What the actor learns from (``docs/implementation.md`` says why each variant exists).

    Args:
        loss: ``awac``, eq. (2); ``bc``, meta behaviour cloning (-log pi(a | s, z)), the paper's imitation baseline;
            ``reparam``, PEARL's -Q(s, a ~ pi) in both phases in eq. (2)'s place (the paper's actor and SAC ablations).
        beta: eq. (2)'s temperature (lambda in the paper).
        clip_score: cap on the advantage before eq. (2)'s weights (the authors' ``clip_score``); None: no cap.
        whiten: standardise the advantage over the batch before the weights (the authors' ``normalize_over_batch``).
        rows: ``all`` (the paper) or ``until_success``: eq. (2) imitates no row after its episode's first success.
        advantage: ``critic``, Q(s, a) - V(s) (the paper); or ``episode_return``, the row's episode return
            against its task's mean in the meta-batch.
        lambda_pearl: weight of the PEARL term (-Q at the policy's action) in the self-supervised phase.
        alpha: SAC's entropy temperature in the actor's loss (and the critic's target: ``soft_target``); ``tuned``: learned.
        soft_target: with ``alpha``, the critic's target is soft too (SAC's); ``false`` keeps eq. (1)'s (the actor ablation).
        action_clamp: the data's actions are clamped to +-this before eq. (2)'s log-likelihood.
    """

    loss: Literal["awac", "bc", "reparam"] = "awac"
    beta: float = 100.0
    clip_score: float | None = None
    whiten: bool = False
    rows: Literal["all", "until_success"] = "all"
    advantage: Literal["critic", "episode_return"] = "critic"
    lambda_pearl: float = 1.0
    alpha: float | Literal["tuned"] = 0.0
    soft_target: bool = True
    action_clamp: float = ACTION_CLAMP

    def __post_init__(self):
        choices = {"loss": ("awac", "bc", "reparam"), "rows": ("all", "until_success"), "advantage": ("critic", "episode_return")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model.actor.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if not 0.0 < self.action_clamp < 1.0:
            raise ConfigError(f"model.actor.action_clamp={self.action_clamp} must be in (0, 1): atanh(+-1) is infinite")
        if self.alpha != "tuned" and not (isinstance(self.alpha, (int, float)) and self.alpha >= 0):
            raise ConfigError(f"model.actor.alpha must be a temperature >= 0 or 'tuned', got {self.alpha!r}")

    @property
    def entropic(self) -> bool:
        return self.alpha == "tuned" or self.alpha > 0

