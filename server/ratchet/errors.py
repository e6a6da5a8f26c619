"""Errors that are the user's to fix: they carry a plain message, never a traceback."""


class RatchetError(Exception):
    """A problem the user can fix; str() says what is wrong and how to fix it."""


class WorkspaceError(RatchetError):
    """The git repository is not in a state the loop can start from."""


class LoopBusyError(RatchetError):
    """Another loop holds this repository."""
