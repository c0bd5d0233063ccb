"""Progress a user can read: updates out of the budget, the phase and the last held-out return in a
terminal; one line per evaluation when the output goes to a file or the bar is off."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


def _phase(module) -> str:
    phase = getattr(module, "phase", None)
    return {0: "offline", 1: "self-supervised"}.get(int(phase), "") if phase is not None else ""


def _held_out(module) -> str:
    evaluations = getattr(module, "evaluations", [])
    return f"{evaluations[-1]['eval/test/final_return']:.2f}" if evaluations else "-"


class UpdatesBar(TQDMProgressBar):
    """The training bar counts updates against the whole budget (from the checkpoint's count on resume),
    redrawn at most every ``interval`` seconds: a redraw per update cost a fifth of a small update."""

    def __init__(self, interval: float = 0.5):
        super().__init__()
        self.interval = interval
        self._drawn = float("-inf")

    @property
    def total_train_batches(self) -> int:
        return self.trainer.lightning_module.total_updates

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(type(trainer.lightning_module).__name__)

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is None or bar.disable:
            return
        now = time.monotonic()
        if now - self._drawn >= self.interval or module.updates == bar.total:
            self._drawn = now
            bar.n = module.updates
            bar.set_postfix(self.get_metrics(trainer, module), refresh=True)

    def get_metrics(self, trainer: L.Trainer, module) -> dict:
        metrics = {"held-out return": _held_out(module)}
        if _phase(module):
            metrics["phase"] = _phase(module)
        return metrics


class EvaluationLines(L.Callback):
    """One line per evaluation, for logs: where the run is in its budget and what it scores."""

    def __init__(self):
        self._started = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, module) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, module) -> None:
        if not trainer.is_global_zero or not getattr(module, "evaluations", []):
            return
        last = module.evaluations[-1]
        training = f", training tasks {last['eval/train/final_return']:.2f}" if "eval/train/final_return" in last else ""
        success = f", success {last['eval/test/final_success']:.2f}" if "eval/test/final_success" in last else ""
        phase = f" ({_phase(module)})" if _phase(module) else ""
        print(
            f"update {module.updates}/{module.total_updates}{phase}: held-out return {_held_out(module)}{success}"
            f"{training} [{(time.perf_counter() - self._started) / 60:.1f} min]",
            flush=True,
        )
