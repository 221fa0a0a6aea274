"""Slow reference coders written differently from the kernels: codewords as strings of '0' and '1'."""


def eg_codeword(n, k):
    """Order-k exp-Golomb codeword of n as a bit string, straight from the definition."""
    v = n + (1 << k)
    body = bin(v)[2:]
    return "0" * (len(body) - 1 - k) + body


def eg_encode(values, k):
    return "".join(eg_codeword(int(n), k) for n in values)


def eg_decode(bits, count, k):
    """Decode `count` codewords from a bit string; returns (values, bits consumed)."""
    out, pos = [], 0
    for _ in range(count):
        zeros = 0
        while bits[pos + zeros] == "0":
            zeros += 1
        width = zeros + k + 1
        if pos + zeros + width > len(bits):
            raise IndexError("bit string ends inside a codeword")
        out.append(int(bits[pos + zeros : pos + zeros + width], 2) - (1 << k))
        pos += zeros + width
    return out, pos


def bits_of(buf, nbits):
    """The first `nbits` bits of a byte buffer, most significant bit first, as a string."""
    return "".join(format(b, "08b") for b in bytes(buf))[:nbits]


def zigzag(v):
    return 2 * v - 1 if v > 0 else -2 * v
