"""Sphinx settings of the course website (``segan book`` passes this folder as Sphinx's ``-c``).

The pages are generated into a build folder by :mod:`segan_lib.book.build`: ``index.md`` (the
course map), ``lessons/*.ipynb`` (notebooks already executed, so MyST-NB does not run them
again), ``results/*.md`` and ``downloads/``. Everything a page loads is in the site itself:
MathJax comes from the ``sphinx-mathjax-offline`` package, never from a CDN, and widget views
(whose JavaScript would come from a CDN) are not rendered (their PNG copies are). The site's own
``static/segan.css`` and ``static/segan.js`` wrap long code lines, let wide equations and figures
scroll, and open figures at full size. :mod:`segan_lib.book.build` adds the settings that depend
on the build with ``-D`` (icon, repository link, the teacher edition's banner).

No page offers its source (``_sources/``): a lesson's downloads are in the box at its top, so
the student edition serves no notebook but the student release.
"""
import importlib.util
from pathlib import Path

project = "segan-course"
author = "the segan-course authors"
copyright = "the segan-course authors"  # noqa: A001 (Sphinx's setting)
html_title = "segan-course"  # the home page's own title is the course's full name

extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["downloads/**", "_build", "**.ipynb_checkpoints"]

# Notebooks: executed before Sphinx runs; render their stored outputs only.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no require.js / widget manager from a CDN
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
smartquotes = False  # keep `--out` and "quotes" as typed: readers copy commands from the pages

# MathJax 3, served from the site's own _static/mathjax folder.
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None or not _mathjax.submodule_search_locations:
    raise ImportError('the course website needs the docs extra: pip install -e ".[docs]"')
html_static_path = [str(Path(next(iter(_mathjax.submodule_search_locations))) / "static"),
                    str(Path(__file__).resolve().parent / "static")]
mathjax_path = "mathjax/tex-chtml.js"
html_css_files = ["segan.css"]
html_js_files = ["segan.js"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,  # it would offer _sources/, which the site does not copy
    "home_page_in_toc": False,  # the site title above the navigation leads home
    "navbar_persistent": [],  # one search box: the one in the navigation
    # Result pages give the right-hand column to their wide tables (their sections are few).
    "secondary_sidebar_items": {"index": ["page-toc.html"], "lessons/*": ["page-toc.html"], "results/*": []},
    "navigation_with_keys": False,
}
html_context = {"default_mode": "auto"}  # light or dark as the reader's system prefers
html_last_updated_fmt = "%Y-%m-%d"
html_show_sphinx = False
html_copy_source = False
html_show_sourcelink = False
html_use_index = False  # no general index page: the pages define no index entries
