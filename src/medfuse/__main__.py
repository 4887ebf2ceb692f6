"""``python -m medfuse``: the same command line as the ``medfuse`` script.

Why both: ``python -m medfuse`` runs the medfuse of exactly the interpreter named, which
is what a user with several environments (or no ``bin/`` on the PATH) can rely on.
"""

from __future__ import annotations

from medfuse.cli import main

if __name__ == "__main__":
    main()
