"""The one adapter from the z-conditioned policy to the runner's ``act(observation) -> action``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from smac_lightning.errors import ConfigError
from smac_lightning.nn import TanhGaussianPolicy, prior, sample


@dataclass
class ZSampling:
    """How z is drawn where the agent acts: in meta-test and in SMAC's collection alike.

    Args:
        exploration: where exploration draws z: ``prior``, p(z) (the paper); ``training``, a random training
            task's posterior from its offline rows (docs/implementation.md, item 19).
        resample: ``step``: a new z at every env step (the authors'); ``trajectory``: one per trajectory.
    """

    exploration: Literal["prior", "training"] = "prior"
    resample: Literal["step", "trajectory"] = "step"

    def __post_init__(self):
        for key, allowed in {"exploration": ("prior", "training"), "resample": ("step", "trajectory")}.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model.z.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")

    @property
    def per_step(self) -> bool:
        return self.resample == "step"


class LatentPolicy:
    """pi(a | s, z) with one z distribution per lane, for ``run_episodes``.

    z ~ N(``mean``, ``var``) (one row per lane) is drawn once, at construction and at every
    ``reset``, or afresh at every step (``per_step``, the authors' exploration and meta-test);
    with ``var=None`` z is ``mean`` itself. Actions are sampled, or ``tanh`` of the policy's mean
    (``deterministic``). ``reset(tasks)`` and ``act`` are also the scripted behaviours'
    interface, so the same adapter generates data (``prior_behaviour``).
    """

    def __init__(self, policy: TanhGaussianPolicy, mean: torch.Tensor, var: torch.Tensor | None = None,
                 per_step: bool = False, deterministic: bool = False):
        self.policy, self.mean, self.var = policy, mean, var
        self.per_step, self.deterministic = per_step, deterministic
        self.z = mean if var is None else sample(mean, var)

    @classmethod
    def prior_behaviour(cls, policy: TanhGaussianPolicy, latent_dim: int) -> "LatentPolicy":
        """z ~ p(z) once per episode, as many lanes as ``reset`` is given tasks."""
        return cls(policy, torch.zeros(0, latent_dim, device=next(policy.parameters()).device))

    def reset(self, tasks: np.ndarray) -> None:
        self.mean, self.var = prior(len(tasks), self.mean.shape[-1], self.mean.device)
        self.z = sample(self.mean, self.var)

    @torch.no_grad()
    def act(self, observation: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observation, dtype=self.mean.dtype, device=self.mean.device)
        z = sample(self.mean, self.var) if self.per_step else self.z
        dist = self.policy(obs, z)
        return (dist.deterministic if self.deterministic else dist.rsample()[0]).cpu().numpy()
