"""A config's training loop against its update alone, in one run: what logging, sampling and progress cost.

Runs ``python -m smac_lightning fit`` on a config (offline phase only, ``--updates`` updates, one
meta-test at the very end, MLflow into a temporary store). From update ``--warmup`` on, chunks of
50 updates of the loop as it runs (everything Lightning does around the update included)
alternate with chunks of 50 of the update alone (``training_step`` on a fresh copy of the module
with plain optimizers, a plain backward, no logging, meta-batches drawn beforehand; same
precision), so that each pair sees the machine in the same state. The last line printed is JSON:
``{"all_in_ms_per_update", "pure_ms_per_update", "overhead", "overhead_range", "precision",
"config", ...}``: medians over the chunks, and ``overhead`` the median over pairs of
all-in / alone - 1.

    python benchmarks/end_to_end.py --config conf/point_robot.yaml
    python benchmarks/end_to_end.py --config conf/point_robot.yaml --bar     # with the terminal's bar
    python benchmarks/end_to_end.py --config conf/cheetah_vel.yaml --data.pearl null --updates 450 --warmup 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from smac_lightning.callbacks import EvaluationLines, UpdatesBar
from smac_lightning.cli import cli
from update_step import autocast, outside_a_trainer  # this folder's: run as a script, it is on the path


CHUNK = 50  # updates per timed chunk


class PureUpdates:
    """The same update alone: a fresh copy of the module at the state it is given, outside a Trainer
    (plain optimizers and backward, no logging), meta-batches drawn beforehand."""

    def __init__(self, module, dm, precision: str):
        self.module = type(module)(**{k: v for k, v in module.hparams.items() if not k.startswith("_")})
        self.module.load_state_dict(module.state_dict())
        self.module.phase = getattr(module, "phase", None)
        outside_a_trainer(self.module)
        generator = torch.Generator().manual_seed(0)
        self.batches = [dm.sample_meta_batch(generator, dm.batch_size) for _ in range(10)]
        self.precision = precision
        self.chunk()  # warm-up

    def chunk(self) -> float:
        """Milliseconds per update over ``CHUNK`` updates."""
        started = time.perf_counter()
        for i in range(CHUNK):
            with autocast(self.precision, cache=False):  # as the Trainer runs it
                self.module.training_step(self.batches[i % len(self.batches)], 0)
        return (time.perf_counter() - started) / CHUNK * 1000


class UpdateClock(L.Callback):
    """Paired chunks: ``CHUNK`` updates of the training loop as it runs (from the start of the first
    to the end of the last; the final evaluation excluded), then ``CHUNK`` of the update alone, and
    so on from update ``warmup`` on. Pairs share the machine's state of the moment, which on a
    shared machine drifts by tens of percent within minutes."""

    def __init__(self, warmup: int, precision: str):
        self.warmup, self.precision, self.mark, self.pure = warmup, precision, None, None
        self.all_in, self.alone = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if module.updates == self.warmup:
            self.pure = PureUpdates(module, trainer.datamodule, self.precision)
            self.mark = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.mark is not None and (module.updates - self.warmup) % CHUNK == 0:
            self.all_in.append((time.perf_counter() - self.mark) / CHUNK * 1000)
            self.alone.append(self.pure.chunk())
            self.mark = time.perf_counter()

    def summary(self) -> dict:
        ratios = [a / p for a, p in zip(self.all_in, self.alone)]
        return {
            "all_in_ms_per_update": round(statistics.median(self.all_in), 3),
            "pure_ms_per_update": round(statistics.median(self.alone), 3),
            "overhead": round(statistics.median(ratios) - 1, 3),
            "overhead_range": [round(min(ratios) - 1, 3), round(max(ratios) - 1, 3)],
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="a config (repeat for overlays)")
    parser.add_argument("--updates", type=int, default=1100)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--precision", default=None, help="--trainer.precision (default: the project's choice for this CPU)")
    parser.add_argument("--bar", action="store_true", help="show the terminal progress bar (on stderr) as an interactive user sees it")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args, extra = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as store:
        argv = [*[x for c in args.config for x in ("--config", c)],
                "--model.offline_updates", str(args.updates), "--model.self_supervised.iterations", "0",
                "--trainer.val_check_interval", str(args.updates), "--trainer.default_root_dir", store,
                "--trainer.logger.init_args.tracking_uri", f"sqlite:///{Path(store) / 'mlflow.db'}",
                *(["--trainer.precision", args.precision] if args.precision else []), *extra]
        clock = UpdateClock(args.warmup, "")
        made = cli(argv, run=False, trainer_defaults={"callbacks": [clock]})
        clock.precision = str(made.trainer.precision)
        made._show_progress()  # what ``fit`` shows: one line per evaluation when the output is not a terminal
        if args.bar:  # ... and the bar a terminal shows
            lines = next(c for c in made.trainer.callbacks if isinstance(c, EvaluationLines))
            made.trainer.callbacks[made.trainer.callbacks.index(lines)] = UpdatesBar()
        started = time.perf_counter()
        made.trainer.fit(made.model, datamodule=made.datamodule)
        wall = time.perf_counter() - started
    summary = clock.summary()
    print(f"{len(clock.all_in)} pairs of {CHUNK}-update chunks: median {summary['all_in_ms_per_update']:.2f} ms/update "
          f"all-in, {summary['pure_ms_per_update']:.2f} alone ({wall:.0f} s for fit, pure chunks and evaluation included)")
    print(json.dumps({
        **summary,
        "precision": clock.precision,
        "config": " + ".join(args.config + extra),
        "updates": args.updates,
        "threads": args.threads,
        "bar": args.bar,
    }))


if __name__ == "__main__":
    main()
