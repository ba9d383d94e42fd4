"""``python -m sda_core`` runs the sda command line."""

import sys

from sda_core.cli.app import main

sys.exit(main())
