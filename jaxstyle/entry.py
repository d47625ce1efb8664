"""The console script: signal handlers first, then the (slow) imports of JAX and the CLI."""

from __future__ import annotations

import sys

STARTUP = "jaxstyle: interrupted during start-up; no output written"


def main(argv=None) -> int:
    try:
        from . import interrupt

        with interrupt.installed():
            try:
                from .cli import main as cli_main
            except KeyboardInterrupt as e:
                print(STARTUP, file=sys.stderr)
                return getattr(e, "exit_code", 130)
            return cli_main(argv, handle_signals=False)
    except KeyboardInterrupt:  # before the handlers were in place
        print(STARTUP, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
