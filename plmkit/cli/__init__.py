"""The `plmkit` command line: the parser and `main`. Each command group is a module of this package that
adds its commands (`add_commands`), parses and prints; the work is done in the room the command names.
Every command explains itself with --help; bad input gives a one-line error naming the file (and line)
and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import Interrupted, PlmkitError
from . import (analyze, bakeoff, bench, compress, embeddings, family, finetune, generate, grover, knowledge, lineage, papers,
               pretrain, xling)

EXIT_USAGE = 2

# The order of the groups is the order of `plmkit --help`.
GROUPS = (pretrain, family, papers, generate, bench, finetune, embeddings, compress, lineage, xling, knowledge, grover,
          analyze, bakeoff)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="plmkit", description="Pre-train, fine-tune and compare the family of "
                                                                "pre-trained language models.")
    parser.add_argument("--version", action="version", version=f"plmkit {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="plmkit: %(message)s")
    try:
        return args.func(args)
    except PlmkitError as e:
        print(f"plmkit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a file or directory the system refuses (permissions, a full disk, …)
        where = f"{e.filename}: " if e.filename else ""
        print(f"plmkit: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as e:
        print(f"plmkit: interrupted after step {e.step}; checkpoint in {e.checkpoint}. To continue, run the same "
              f"command{' with --resume' if hasattr(args, 'resume') else ' again'}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("plmkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
