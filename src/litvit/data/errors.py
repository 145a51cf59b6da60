"""Errors for bad training / evaluation input: each message names the problem and the fix."""


class DataError(ValueError):
    """A data set that cannot be used as given (empty folders, class mismatch, unreadable images in 'error' mode)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder that does not exist."""


class BadImageError(DataError):
    """An image file that cannot be read or decoded (raised with `bad_images='error'`)."""
