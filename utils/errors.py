"""One exception type for every bad input the user can fix.

Scripts catch ``TDKDError`` at the top level and print its message as a single line
(``path:line: what is wrong``), so users never see a traceback for a bad file.
"""

import functools
import sys

_WORKER_PREFIX = "Caught TDKDError in "


class TDKDError(Exception):
    """A bad input (file, line, checkpoint, flag) described in one line.

    A DataLoader worker's error reaches the main process re-raised as
    ``TDKDError("Caught TDKDError in DataLoader worker process 0.\\nOriginal Traceback ...")``;
    only the original message (the traceback's last line) is kept, so it stays one line.
    """

    def __init__(self, message):
        message = str(message)
        if message.startswith(_WORKER_PREFIX):
            message = message.rstrip().splitlines()[-1].split("TDKDError: ", 1)[-1]
        super().__init__(message)


def located(path, message, line=None):
    """Format ``path[:line]: message`` for a ``TDKDError``."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"{where}: {message}"


def exit_on_error(main):
    """Wrap a script's ``main``: a ``TDKDError`` ends it with one ``error: ...`` line on
    stderr and exit status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except TDKDError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    return wrapper
