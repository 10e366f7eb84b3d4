"""User-facing errors.

An :class:`AptError` is a problem with the user's input or environment (a missing model, a bad
hash, a wrong setting). The ``apt`` command prints its message, without a traceback, and exits
with status 2. Messages say what was wrong and what to do.
"""


class AptError(Exception):
    """A problem the user can fix; the message says how."""


class AssetError(AptError):
    """An offline asset could not be fetched, verified or extracted."""
