"""What a compression reports: per tensor and for the whole file (sizes, ratios, bits per
parameter, SNR where lossy)."""

import dataclasses
import math


@dataclasses.dataclass
class TensorReport:
    name: str
    dtype: str
    shape: tuple
    coding: str
    original_bytes: int
    compressed_bytes: int
    snr_db: float | None = None  # lossy tensors: 10 log10(sum w^2 / sum (w - w_hat)^2)
    step: float | None = None

    @property
    def numel(self):
        return math.prod(self.shape)

    @property
    def bits_per_param(self):
        return 8 * self.compressed_bytes / self.numel if self.numel else 0.0

    @property
    def ratio(self):
        return self.original_bytes / self.compressed_bytes if self.compressed_bytes else math.inf


@dataclasses.dataclass
class CompressReport:
    source: str
    destination: str
    original_bytes: int
    compressed_bytes: int
    tensors: list
    float_params: int
    signal: float = 0.0  # sum of w^2 over lossy tensors
    noise: float = 0.0  # sum of (w - w_hat)^2 over lossy tensors

    @property
    def ratio(self):
        return self.original_bytes / self.compressed_bytes if self.compressed_bytes else math.inf

    @property
    def bits_per_float_param(self):
        """Whole file size in bits over the number of float parameters."""
        return 8 * self.compressed_bytes / self.float_params if self.float_params else 0.0

    @property
    def lossless(self):
        return all(t.coding != "quantized" for t in self.tensors)

    @property
    def aggregate_snr_db(self):
        """10 log10(sum w^2 / sum (w - w_hat)^2) over all float tensors (inf when lossless)."""
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(self.signal / self.noise) if self.signal > 0 else -math.inf

    def to_dict(self):
        tensors = [
            dict(dataclasses.asdict(t), shape=list(t.shape), bits_per_param=t.bits_per_param) for t in self.tensors
        ]
        return {
            "source": self.source,
            "destination": self.destination,
            "original_bytes": self.original_bytes,
            "compressed_bytes": self.compressed_bytes,
            "ratio": self.ratio,
            "bits_per_float_param": self.bits_per_float_param,
            "aggregate_snr_db": None if math.isinf(self.aggregate_snr_db) else self.aggregate_snr_db,
            "lossless": self.lossless,
            "tensors": tensors,
        }
