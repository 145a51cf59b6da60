"""`python -m litvit.eval ...` (what `torchrun ... -m litvit.eval` runs in every process)."""

import sys

from .cli import main

sys.exit(main())
