"""The default training precision: the fastest one this machine runs natively.

On a CPU with native bfloat16 matmuls (AMX or AVX512_BF16) ``bf16-mixed`` runs the update about
twice as fast as float32; without them bfloat16 is emulated and several times slower, so float32
it is. An explicit ``--trainer.precision`` always wins.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where that file does not exist)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def choose_precision(accelerator: str, flags: set[str]) -> tuple[str, str]:
    """``(precision, reason)`` for a run on ``accelerator`` (``cpu``, ``gpu``, ``cuda``...; the CLI
    resolves ``auto`` first) whose CPU has ``flags``."""
    if accelerator != "cpu":
        return "32-true", f"accelerator {accelerator}: float32 (the update is bound by kernel launches, not matmul rate)"
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if native:
        return "bf16-mixed", f"this CPU has native bfloat16 matmuls ({', '.join(native)}): about 2x float32's rate"
    if not flags:
        return "32-true", "the CPU's flags could not be read: float32"
    return "32-true", "this CPU has no native bfloat16 (neither AMX nor AVX512_BF16): bf16 would be emulated and slower"
