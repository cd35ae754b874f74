"""The course website: ``segan book --out site/`` builds it with Sphinx, MyST-NB and sphinx-book-theme.

The student edition (default) shows the exercises as the nbgrader student release has them and
holds no solution and no hidden test; ``--edition teacher`` shows the solved notebooks.

Modules: :mod:`~segan_lib.book.command` (the ``segan book`` sub-command), :mod:`~segan_lib.book.build`
(the four build steps), :mod:`~segan_lib.book.edition` (student and teacher editions),
:mod:`~segan_lib.book.execute` (running a lesson, shaping its page), :mod:`~segan_lib.book.lessons`
and :mod:`~segan_lib.book.pages` (course map, home page), :mod:`~segan_lib.book.results` and
:mod:`~segan_lib.book.result_tables` (pages of the pinned reference results), ``conf.py`` (Sphinx
settings) and ``static/`` (the site's own CSS and JavaScript).

Importing this package needs only the core dependencies; Sphinx and the other packages of the
``docs`` extra are imported when a site is built.
"""
from segan_lib.book.command import add_book_command, run_book

__all__ = ["add_book_command", "run_book"]
