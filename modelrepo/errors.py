"""Errors of the model repository tools; each message is one line for the command line."""


class ImportRefused(ValueError):
    """A graph or module that cannot be imported as it stands; nothing was written."""
