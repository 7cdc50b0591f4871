"""``python -m adaptloop.cli``: the same as the ``adaptloop`` command."""

from adaptloop.cli import main

main()
