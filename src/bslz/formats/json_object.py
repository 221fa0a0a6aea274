"""Parse a header that must be a JSON object, refusing anything else with a FormatError; and the
check of a JSON value that must be a non-negative integer."""

import json

from bslz.errors import FormatError


def parse_json_object(path, data, what):
    """The dict in UTF-8 JSON bytes `data`; `what` names it in errors ("header", ...)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of over 4300 digits
        raise FormatError(f"{path}: {what} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: {what} is not a JSON object")
    return value


def is_uint(v):
    """Whether a JSON value is a non-negative integer (not a bool, which Python counts as one)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
