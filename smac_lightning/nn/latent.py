"""The task variable z: the prior p(z) and reparameterised draws from a Gaussian posterior."""

from __future__ import annotations

import torch


def sample(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """z ~ N(mean, var), differentiable in ``mean`` and ``var``."""
    return mean + var.sqrt() * torch.randn_like(mean)


def rows(z: torch.Tensor, n: int) -> torch.Tensor:
    """One z per task or trajectory ``[T, d]`` repeated for each of its ``n`` rows: ``[T, n, d]`` (a view)."""
    return z.unsqueeze(1).expand(z.shape[0], n, z.shape[-1])


def prior(n: int, latent_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """p(z) = N(0, I) as ``n`` rows of mean and variance."""
    return torch.zeros(n, latent_dim, device=device), torch.ones(n, latent_dim, device=device)
