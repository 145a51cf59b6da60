"""`python -m litvit.train ...` (what `torchrun ... -m litvit.train` runs in every process)."""

import sys

from .cli import main

sys.exit(main())
