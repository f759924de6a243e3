"""What every entry point shares: ``[-c FILE] [key=value ...]`` parsed into a stage's config, and one-line errors
instead of tracebacks. ``simseg <stage>`` and the scripts in ``stages/`` (``accelerate launch stages/pretrain.py``)
both start here, so a stage reads its config and fails the same way however it is launched."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from simseg.config.loader import load_config
from simseg.errors import SimsegError, one_line


def stage_config(cls: type, argv: list[str], stage: str):
    """Parse ``[-c FILE] [section.key=value ...]`` into a config of type ``cls``; ``--help`` lists every key
    (:func:`simseg.config.help.config_help`, built only when asked for)."""
    from simseg.config.help import config_help

    wants_help = any(arg in ("-h", "--help") for arg in argv)
    parser = argparse.ArgumentParser(
        prog=f"simseg {stage}", description=f"Run the {stage} stage. Config: defaults <- -c FILE <- key=value.",
        epilog=config_help(cls) if wants_help else None, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="YAML file with the differences from the defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=10 data.subset=1k")
    args = parser.parse_args(argv)
    return load_config(cls, args.config, args.overrides)


def run_main(main: Callable[[list[str]], object], argv: list[str]) -> None:
    """Run ``main(argv)``; a user-caused failure prints one line and exits 2, Ctrl-C exits 130 with a hint."""
    try:
        main(argv)
    except SimsegError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun/accelerate every rank fails alike: say it once
            print(f"simseg: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("simseg: interrupted; rerun the same command with resume=true to continue from the last epoch",
              file=sys.stderr)
        sys.exit(130)
