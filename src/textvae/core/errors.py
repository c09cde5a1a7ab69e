"""The project's error types. Each carries a one-line message naming the file, line, key or URL at fault."""


class TextvaeError(Exception):
    """Base of every error textvae reports to the user as one line (the CLI prints it and exits 1)."""


class DataError(TextvaeError):
    """A corpus file or download is missing, malformed or fails verification."""


class ConfigError(TextvaeError):
    """A bad option or configuration value."""


class CheckpointError(TextvaeError):
    """A checkpoint is missing, unreadable or incompatible."""


class TrainingError(TextvaeError):
    """Training cannot continue (e.g. a NaN or infinite loss)."""
