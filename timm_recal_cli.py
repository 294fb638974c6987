"""The ``timm-recal`` console script.

A module outside the ``timm_recal`` package on purpose: importing that package loads torch and timm (seconds),
and a Ctrl-C in those seconds must end the command as every other interrupt does (one line, exit 130), which only
code that runs before that import can promise.
"""
import sys
from typing import List, Optional

__all__ = ['main']


def main(argv: Optional[List[str]] = None) -> int:
    try:
        from timm_recal.cli import main as run
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    return run(argv)


if __name__ == '__main__':
    sys.exit(main())
