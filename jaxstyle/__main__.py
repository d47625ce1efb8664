import sys

try:
    from .cli.entry import main
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds
    print("jaxstyle: interrupted during start-up; no output written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
