"""The one exception type whose message is shown to the user as-is, on one line."""


class FootprintError(Exception):
    """A problem the user can fix (bad input, unreadable DB...): printed as one line, exit code 2."""
