"""``python -m smac_lightning``: training and meta-test (``cli.py``), ``data`` (``data_commands.py``) and
``compare`` (``compare.py``); every error of ours as one line."""

from __future__ import annotations

import sys

from smac_lightning.cli import cli
from smac_lightning.errors import SmacError


OTHER_COMMANDS = (
    "more commands: python -m smac_lightning data {make,info} --help (make or inspect a dataset); "
    "python -m smac_lightning compare --help (SMAC against its baselines over seeds)"
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(OTHER_COMMANDS)
    try:
        if args[:1] == ["data"]:
            from smac_lightning.data_commands import data_command

            data_command(args[1:])
        elif args[:1] == ["compare"]:
            from smac_lightning.compare import USAGE, run

            if args[1:2] in (["-h"], ["--help"]):
                print(USAGE)
                return
            run(args[1:])
        else:
            cli(argv)  # None: LightningCLI reads sys.argv itself
    except SmacError as err:
        hint = f"\n{OTHER_COMMANDS}" if "invalid choice" in str(err) else ""
        print(f"smac_lightning: error: {err}{hint}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
