"""smac_lightning: SMAC (offline meta-RL with online self-supervision) on Lightning, TorchRL and TensorDict."""

__version__ = "0.1.0"
