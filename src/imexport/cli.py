"""The ``imexport`` command. Subcommands:

* ``imexport verify OUTDIR``: re-check every output against ``OUTDIR/imexport_manifest.json``
  (existence, size, sha256, readable by its library). Exit status 0 when everything
  matches, 1 when something differs (every such file is named), 2 on a usage error.

Exports themselves run through Snakemake (``snakemake --cores N --configfile ...``) or
the Python API (``imexport.api.imwrite``).
"""

from __future__ import annotations

import argparse
import sys

from .checksums import default_workers


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    problems = verify(args.outdir, workers=args.workers)
    for line in problems:
        print(f"DIFFERS {line}")
    if problems:
        print(f"imexport verify: {len(problems)} problem(s) in {args.outdir}", file=sys.stderr)
        return 1
    print(f"imexport verify: {args.outdir} matches its manifest")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imexport", description="Tools around imexport exports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="check an export folder against its manifest",
        description="Check every output in OUTDIR against OUTDIR/imexport_manifest.json.",
    )
    verify.add_argument("outdir", metavar="OUTDIR", help="the export's output folder")
    verify.add_argument("--workers", type=int, default=default_workers(), help="files hashed at once (default: %(default)s)")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
