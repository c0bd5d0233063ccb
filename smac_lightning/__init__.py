"""smac_lightning: SMAC (offline meta-RL with online self-supervision) on Lightning, TorchRL and TensorDict."""

__version__ = "0.1.0"

from smac_lightning import envs  # noqa: E402,F401  registers the gymnasium ids (smac_lightning/<Name>-v0)
