"""The default precision follows the CPU's native bfloat16 support; an explicit one always wins."""

import pytest

from conftest import SMOKE_ARGS
from smac_lightning import cli as cli_module
from smac_lightning.cli import cli
from smac_lightning.precision import choose_precision, cpu_flags


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    "accelerator, flags, expected",
    [
        ("cpu", {"avx512f", "avx512_bf16"}, "bf16-mixed"),  # AMD Zen 4
        ("cpu", {"avx512f", "amx_bf16", "amx_tile"}, "bf16-mixed"),  # Intel Sapphire Rapids
        ("cpu", {"avx512f", "avx2"}, "32-true"),  # AVX-512 without bf16: emulated, slower
        ("cpu", set(), "32-true"),  # flags unknown
        ("gpu", {"avx512_bf16"}, "32-true"),
    ],
)
def test_precision_is_chosen_from_the_flags(accelerator, flags, expected):
    precision, reason = choose_precision(accelerator, flags)
    assert precision == expected
    assert reason


def _precision(monkeypatch, flags, *args):
    monkeypatch.setattr(cli_module, "cpu_flags", lambda: flags)
    made = cli([*SMOKE_ARGS, "--trainer.logger", "false", *args], run=False)
    return made.trainer.precision, made.precision_choice


def test_the_cli_uses_the_choice_unless_a_precision_is_given(monkeypatch):
    assert _precision(monkeypatch, {"avx512_bf16"}) == (
        "bf16-mixed", "bf16-mixed: this CPU has native bfloat16 matmuls (avx512_bf16): about 2x float32's rate")
    assert _precision(monkeypatch, {"avx2"})[0] == "32-true"
    assert _precision(monkeypatch, {"avx512_bf16"}, "--trainer.precision", "32-true") == ("32-true", None)
    assert _precision(monkeypatch, {"avx2"}, "--trainer.precision", "bf16-mixed") == ("bf16-mixed", None)
