"""Errors for bad training / evaluation input (defined with every litvit error in `litvit.errors`)."""

from ..errors import BadImageError, DataError, DataNotFoundError

__all__ = ["BadImageError", "DataError", "DataNotFoundError"]
