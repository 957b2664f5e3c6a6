"""The ``diffconv`` command line: ``diffconv <subcommand> [options]``.

Each subcommand lives in :mod:`diffconv.lab.commands` as a module with ``add_arguments(parser)``
and ``run(args) -> int``; it is imported only when chosen, so ``diffconv --version`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from diffconv import __version__

# name -> (module under diffconv.lab.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "DiffConv vs zero padding on a smooth field (a few seconds)"),
}


def _optional(name: str, module: str, help: str) -> None:
    if importlib.util.find_spec(f"diffconv.lab.commands.{module}") is not None:
        SUBCOMMANDS[name] = (module, help)


_optional("accuracy", "accuracy", "the paper's boundary-accuracy experiment: table, JSON and figure")
_optional("parity", "parity", "torch vs JAX outputs and gradients, with a pass/fail exit status")
_optional("speed", "speed", "time and peak memory of DiffConv vs zero 'same' padding")
_optional("train", "train", "train a small UNet with zero padding and with DiffConv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffconv", description="Padding-free convolution for PyTorch and JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"diffconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(_module=module)
        importlib.import_module(f"diffconv.lab.commands.{module}").add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(f"diffconv.lab.commands.{args._module}").run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
