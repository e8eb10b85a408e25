"""Entry point of the ``spillway`` command: patch for gevent first, then run the CLI."""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)
from spillway.cli import main

if __name__ == "__main__":
    main()
