"""Data for `litvit train` / `litvit eval`: checked ImageFolder trees, the embedded digits, sharding and seeding."""

from .digits import DIGITS_CLASSES, DigitsDataset, digits_split
from .errors import BadImageError, DataError, DataNotFoundError
from .folder import BAD_IMAGE_MODES, ImageFileDataset, load_rgb, scan_image_folder, scan_split
from .loader import EpochSampler, SeededDataset, ShardSampler, collate, sample_seed, seeded_rng

__all__ = [
    "BAD_IMAGE_MODES",
    "BadImageError",
    "DIGITS_CLASSES",
    "DataError",
    "DataNotFoundError",
    "DigitsDataset",
    "EpochSampler",
    "ImageFileDataset",
    "SeededDataset",
    "ShardSampler",
    "collate",
    "digits_split",
    "load_rgb",
    "sample_seed",
    "scan_image_folder",
    "scan_split",
    "seeded_rng",
]
