"""Every error bslz raises on purpose. `OSError` from the file system passes through unchanged."""


class BslzError(Exception):
    """Root of all bslz errors: catch this to catch them all."""


class FormatError(BslzError):
    """The input bytes are corrupt, hostile, or not a stream bslz can read."""


class TruncatedError(FormatError):
    """The input ends before the data it announces."""


class UnsupportedVersionError(FormatError):
    """The input was written by a format version this bslz cannot read."""


class InvalidArgumentError(BslzError, ValueError):
    """A caller passed a value outside what the function accepts."""


class StepTooFineError(InvalidArgumentError):
    """A quantizer step too fine for the values: their indices would pass the format's range."""
