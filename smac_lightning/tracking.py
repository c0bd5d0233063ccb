"""MLflow tracking that fails early when the server is absent and never kills a run later."""

from __future__ import annotations

import functools
import urllib.error
import urllib.request

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_warn

from smac_lightning.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3 refuses a plain ./mlruns file store


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Raise ConfigError at once if an http(s) tracking server does not answer its health check."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    raise ConfigError(
        f"the MLflow tracking server at {tracking_uri} is unreachable ({problem}). Start it, fix "
        f"--trainer.logger.init_args.tracking_uri, or log locally with tracking_uri sqlite:///mlflow.db."
    )


def _survive(method):
    """Report a tracking failure once and carry on: losing a metric must not lose the run."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # the server went away, a disk filled up, a request timed out...
            self.failures += 1
            if self.failures == 1:
                rank_zero_warn(
                    f"MLflow logging to {self._tracking_uri} failed ({type(err).__name__}: {err}); training goes "
                    f"on and checkpoints are still written to disk. Later failures are counted, not repeated."
                )
            return None

    return wrapper


class ResilientMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger whose logging calls never raise once the run has started."""

    failures = 0

    log_metrics = _survive(MLFlowLogger.log_metrics)
    log_hyperparams = _survive(MLFlowLogger.log_hyperparams)
    after_save_checkpoint = _survive(MLFlowLogger.after_save_checkpoint)
    finalize = _survive(MLFlowLogger.finalize)
