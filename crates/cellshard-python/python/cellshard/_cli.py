"""The ``cellshard`` console command: the same command line as the Rust binary, run inside
the package's extension module."""

import os
import signal
import sys

from ._cellshard import main as _main


def main():
    # Ctrl-C stops the command at once, as it stops the binary; Python's handler would only
    # run after the Rust call returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Processes the command starts of itself (the viewer's query workers) run as
    # `python -m cellshard`: this interpreter is not the command.
    os.environ.setdefault("CELLSHARD_PYTHON_EXE", sys.executable)
    sys.exit(_main(["cellshard", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
