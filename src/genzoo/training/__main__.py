"""``python -m genzoo.training ...`` (and ``accelerate launch -m genzoo.training ...``): the trainer."""

import sys

from .trainer import main

sys.exit(main())
