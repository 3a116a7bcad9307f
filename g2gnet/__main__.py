"""``python -m g2gnet`` is the ``g2g`` command."""

import sys

from .cli import main

sys.exit(main())
