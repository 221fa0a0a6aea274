"""bslz: small neural-network model files that stay usable.

Rate-constrained training (BackSlash), generalized-Gaussian quantization and exp-Golomb coding.
"""

from bslz.errors import (
    BslzError,
    FormatError,
    InvalidArgumentError,
    TruncatedError,
    UnsupportedVersionError,
)

__version__ = "0.1.0"

__all__ = [
    "BslzError",
    "FormatError",
    "InvalidArgumentError",
    "TruncatedError",
    "UnsupportedVersionError",
    "__version__",
]
