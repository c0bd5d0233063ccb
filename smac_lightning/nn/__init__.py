"""Networks only: no Lightning, buffers or environments here."""

from smac_lightning.nn.critic import CriticEnsemble
from smac_lightning.nn.decoder import RewardDecoder
from smac_lightning.nn.encoder import ContextEncoder
from smac_lightning.nn.latent import prior, rows, sample
from smac_lightning.nn.mlp import EnsembleMLP, mlp
from smac_lightning.nn.policy import ACTION_CLAMP, TanhGaussian, TanhGaussianPolicy

__all__ = ["ACTION_CLAMP", "ContextEncoder", "CriticEnsemble", "EnsembleMLP", "RewardDecoder", "TanhGaussian", "TanhGaussianPolicy", "mlp", "prior", "rows", "sample"]
