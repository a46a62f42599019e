"""Errors the command line turns into a one-line message and a non-zero exit."""


class TrainingError(Exception):
    """Base class: `str(exc)` is a complete one-line message for the user."""


class ConfigError(TrainingError):
    """An invalid model or training configuration."""


class DataError(TrainingError):
    """A data file that is missing or malformed."""


class ExportError(TrainingError):
    """An export that cannot be written or fails its verification."""
