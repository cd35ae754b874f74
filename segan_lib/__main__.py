"""``python -m segan_lib ...`` is the ``segan`` command."""
import sys

from segan_lib.cli import main

sys.exit(main())
