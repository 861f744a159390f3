"""Errors a user can act on. The CLI prints them as one clear message instead of a traceback."""


class UserError(ValueError):
    """Bad input: the message names the file, the task and the field (or the config key)."""
