"""One exception type for every bad input the user can fix.

Scripts catch ``TDKDError`` at the top level and print its message as a single line
(``path:line: what is wrong``), so users never see a traceback for a bad file.
"""


class TDKDError(Exception):
    """A bad input (file, line, checkpoint, flag) described in one line."""


def located(path, message, line=None):
    """Format ``path[:line]: message`` for a ``TDKDError``."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"{where}: {message}"
