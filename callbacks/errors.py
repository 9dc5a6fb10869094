"""UserError: a mistake the user can fix; train.py and the inference commands print it as one line."""


class UserError(ValueError):
    """A problem in the user's input (a path, a value, a file, a checkpoint), not a bug.

    The message names the problem, the path or value, and the fix. train.py and the inference commands print
    it as one line without a traceback; `--traceback` or DL2_TRACEBACK=1 shows the traceback. Subclasses
    ValueError so code that catches bad values keeps working.
    """
