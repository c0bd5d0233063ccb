"""Errors that mean "your input is wrong": the CLI prints their message alone, without a traceback."""


class SmacError(Exception):
    """Base of the errors a user fixes in their config, data or command line."""


class DatasetError(SmacError, ValueError):
    """An offline dataset that is missing, malformed, or made for something else."""


class ConfigError(SmacError, ValueError):
    """A configuration that cannot run as asked."""


class TrainingDiverged(SmacError):
    """A loss or a parameter became NaN or infinite."""
