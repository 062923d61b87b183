"""The ``stickyctl`` entry point (also ``python -m agent``).

Ctrl-C at any moment, even while the command's modules are still loading, ends it with exit
code 130 and no traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Run ``stickyctl`` with ``sys.argv``; return its exit code."""
    try:
        from agent.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:  # before agent.cli took over (importing it)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return 130


if __name__ == "__main__":
    sys.exit(main())
