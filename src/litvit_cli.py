"""The `litvit` command's launcher.

`import litvit` registers the models with timm, which imports torch and timm (seconds). The command line needs
neither to parse its arguments or print its help, so this module, outside the package, tells the package to wait
(`DEFER_MODELS`) and hands over to `litvit.cli`, which registers the models just before a command runs.
"""

import sys
from typing import List, Optional

DEFER_MODELS = True


def main(argv: Optional[List[str]] = None) -> int:
    from litvit.cli import main as litvit_main

    return litvit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
