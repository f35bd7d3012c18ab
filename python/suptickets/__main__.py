"""``python -m suptickets train ...`` (what ``torchrun -m suptickets`` runs): see ``suptickets.train.cli``."""
import sys

from .train.cli import main

sys.exit(main())
