"""python -m compression <command> ...; each command lives in compression/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module; a module defines HELP, add_arguments(parser) and run(args) -> int
COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "translate": "translate",
    "compress": "compress",
    "seqkd": "seqkd",
    "report": "report",
    "export": "export",
    "attention": "attention",
    "import-marian": "marian_import",
    "export-marian": "marian_export",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compression", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, module_name in COMMANDS.items():
        # import only the command asked for (torch is slow to import), but list them all in --help
        try:
            module = importlib.import_module(f"compression.commands.{module_name}") if name == wanted else None
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("compression.commands"):
                continue
            raise
        p = sub.add_parser(name, help=getattr(module, "HELP", None))
        if module is not None:
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
