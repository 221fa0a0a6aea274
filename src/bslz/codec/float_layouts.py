"""The bit fields of the float formats that `floats` codes, and how it cuts a word into pieces."""

import dataclasses
import functools

import numpy as np

from bslz.errors import InvalidArgumentError

U64 = np.uint64


@dataclasses.dataclass(frozen=True)
class FloatLayout:
    """Bit fields of a float format: sign | exponent (exp_bits) | mantissa (man_bits)."""

    name: str
    exp_bits: int
    man_bits: int

    @property
    def bits(self):
        return 1 + self.exp_bits + self.man_bits

    @property
    def word_dtype(self):
        return np.dtype(f"u{self.bits // 8}")

    @property
    def head_mantissa_bits(self):
        """Mantissa bits coded with the exponent (the rANS alphabet holds up to 12 bits)."""
        return min(2, self.man_bits, 12 - self.exp_bits)

    @property
    def low_bits(self):
        return self.man_bits - self.head_mantissa_bits

    def pieces(self):
        """(name, width, shift) of every piece: the head (shift None), then the tail from the top."""
        out = [("exponent", self.exp_bits + self.head_mantissa_bits, None)]
        tail_bits = 1 + self.low_bits
        top = tail_bits % 8 or 8
        shift = tail_bits - top
        out.append(("sign+mantissa", top, shift))
        while shift:
            shift -= 8
            out.append((f"mantissa byte {shift // 8}", 8, shift))
        return out


LAYOUTS = {
    layout.name: layout
    for layout in (
        FloatLayout("float8_e4m3", 4, 3),
        FloatLayout("float8_e5m2", 5, 2),
        FloatLayout("float16", 5, 10),
        FloatLayout("bfloat16", 8, 7),
        FloatLayout("float32", 8, 23),
        FloatLayout("float64", 11, 52),
    )
}


def get_layout(name):
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown float layout {name!r}; known: {', '.join(LAYOUTS)}") from None


def kernel_args(layout):
    """(widths, shifts, sign position, low bits) of the layout's pieces as the chunk kernels take
    them (the head's shift: -1), made once a layout (cached by name, whose hash Python keeps: the
    frozen layout's is computed again at every call)."""
    return _kernel_args(layout.name)


@functools.cache
def _kernel_args(name):
    layout = LAYOUTS[name]
    pieces = layout.pieces()
    widths = np.array([width for _, width, _ in pieces], dtype=np.int64)
    shifts = np.array([-1 if shift is None else shift for _, _, shift in pieces], dtype=np.int64)
    return widths, shifts, U64(layout.bits - 1), U64(layout.low_bits)
