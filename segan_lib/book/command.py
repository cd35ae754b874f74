"""``segan book``: build the course website (registered through ``segan_lib.cli.EXTRA_COMMANDS``).

Examples::

    segan book --out site                      # student edition: every lesson executed in quick mode, then Sphinx
    segan book --out site --edition teacher    # the same with the solutions and hidden tests (do not publish)
    segan book --out site --notebooks 02 03    # only these lessons (the map still lists all)
    segan book --out site --no-execute         # pages without outputs, in about a minute
    python -m http.server -d site              # preview at http://localhost:8000
"""
from __future__ import annotations

import argparse
import sys

from segan_lib.book.edition import EDITIONS, STUDENT
from segan_lib.cli_types import positive_int


def add_book_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segan book`` on the ``segan`` sub-command parsers (handler via ``args.func``)."""
    command = subparsers.add_parser(
        "book", help="build the course website (Sphinx + MyST-NB) into a folder",
        description="Build the course website: each lesson executed in quick mode with its outputs, "
                    "a link to its nbgrader student release, a home page with the course map, and pages of "
                    "the pinned reference results. The student edition (default) shows the exercises as "
                    "students get them, with no solution and no hidden test anywhere in the site; the teacher "
                    "edition shows the solved notebooks and links them too. Needs the docs extra "
                    '(pip install -e ".[docs]"). The folder is a static site: copy it to any web host.')
    add = command.add_argument
    add("--out", required=True, help="folder of the site (created, or replaced if an earlier segan book made it)")
    add("--edition", choices=EDITIONS, default=STUDENT,
        help="student (default): exercises as in the nbgrader release, safe to publish; teacher: solutions and "
             "hidden tests shown")
    add("--notebooks", nargs="+", metavar="NAME", dest="only",
        help="only these lessons (start of the name, e.g. 02 03_losses); default all")
    add("--execute", action=argparse.BooleanOptionalAction, default=True,
        help="run the lessons in quick mode to show their outputs (default); --no-execute: pages without "
             "outputs, built in about a minute")
    add("--jobs", type=positive_int, default=1,
        help="lessons executed at the same time, and Sphinx processes (default 1)")
    add("--cell-timeout", type=positive_int, metavar="SECONDS",
        help="seconds one cell may run before the build fails (default 1800: only a hung cell fails)")
    add("--notebooks-dir", help="folder of the course notebooks (default ./notebooks)")
    add("--results", help="folder of pinned reference results (default NOTEBOOKS_DIR/results; may be absent)")
    add("--build-dir", default="build/book", help="work folder for generated sources (default build/book)")
    command.set_defaults(func=run_book)


def run_book(args: argparse.Namespace) -> int:
    """Handler of ``segan book``: builds the site and prints where it is."""
    from segan_lib._files import check_writable_dir
    from segan_lib.assignments import AssignmentError
    from segan_lib.book.build import build_book
    from segan_lib.book.execute import BookError

    check_writable_dir(args.out, "--out")  # a path that cannot be a folder fails now, not after the build
    check_writable_dir(args.build_dir, "--build-dir")
    options = {"cell_timeout": args.cell_timeout} if args.cell_timeout else {}
    try:
        build_book(args.out, notebooks_dir=args.notebooks_dir, only=args.only, execute=args.execute,
                   jobs=args.jobs, build_dir=args.build_dir, results_dir=args.results, edition=args.edition,
                   **options)
    except (BookError, AssignmentError) as error:
        print(f"segan: error: {error}", file=sys.stderr)
        return 1
    return 0
