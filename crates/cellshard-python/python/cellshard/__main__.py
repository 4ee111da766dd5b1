"""``python -m cellshard``: the ``cellshard`` command line."""

from ._cli import main

main()
