"""The short screen a command ends on: where the run is logged, where its checkpoints are, what it scored."""

from __future__ import annotations

from pathlib import Path


def _line(label: str, value: str) -> str:
    return f"  {label:<24} {value}"


def _scores(evaluation: dict, prefix: str = "eval/test") -> str:
    parts = [f"final_return {evaluation[f'{prefix}/final_return']:.2f}"]
    if f"{prefix}/final_success" in evaluation:
        parts.append(f"success {evaluation[f'{prefix}/final_success']:.2f}")
    if f"{prefix}/final_return_offline_context" in evaluation:
        parts.append(f"from an offline history {evaluation[f'{prefix}/final_return_offline_context']:.2f}")
    return ", ".join(parts)


def end_of_run(stage: str, module, seconds: float, run: tuple[str, str, str] | None = None, checkpoints: str | None = None) -> str:
    """What ``stage`` did, for its user: ``run`` is the MLflow ``(name, id, tracking uri)``, ``checkpoints``
    the folder they went to; ``module.evaluations`` the meta-test results of this process."""
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    lines = [f"smac_lightning {stage} done in {took} ({module.updates} updates)"]
    if run is not None:
        name, run_id, uri = run
        lines.append(_line("MLflow run", f"{name} ({run_id}) in {uri}"))
        if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
            lines.append(_line("look at it", f"mlflow ui --backend-store-uri {uri}"))
    if checkpoints is not None:
        lines.append(_line("checkpoints", str(Path(checkpoints) / "last.ckpt")))
    evaluations = getattr(module, "evaluations", [])
    if evaluations:
        switch = getattr(module, "hparams", {}).get("offline_updates")
        at_switch = [e for e in evaluations if switch is not None and e["updates"] == switch]
        if at_switch and at_switch[0] is not evaluations[-1]:
            lines.append(_line("held-out, at the switch", _scores(at_switch[0])))
        lines.append(_line("held-out, at the end" if stage == "fit" else "held-out", _scores(evaluations[-1])))
        if "eval/train/final_return" in evaluations[-1]:
            lines.append(_line("training tasks", _scores(evaluations[-1], "eval/train")))
    return "\n".join(lines)
