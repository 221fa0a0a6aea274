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

from bslz.api import compress_bytes, compress_file, compress_stream  # noqa: E402
from bslz.decompression import decompress_bytes, decompress_file, decompress_stream  # noqa: E402
from bslz.reader import safe_open  # noqa: E402
from bslz.reports import CompressReport  # noqa: E402

__all__ = [
    "BslzError",
    "CompressReport",
    "compress_bytes",
    "compress_file",
    "compress_stream",
    "decompress_bytes",
    "decompress_file",
    "decompress_stream",
    "safe_open",
    "FormatError",
    "InvalidArgumentError",
    "TruncatedError",
    "UnsupportedVersionError",
    "__version__",
]
