"""``python -m segan_lib.bench``: the same as ``segan bench``."""
import sys

from segan_lib.bench.command import main

sys.exit(main())
