"""Rate-constrained training (BackSlash, arXiv:2504.16968): train so that the weights cost few bits.

    bs = BackSlash(model, lam=1e3)        # the paper's update, after each optimizer step
    bs.attach(optimizer)
    ...train...
    bs.export("model.bslz")               # trained weights quantized at the planned step

Imports torch; `bslz.train.hf` adds a Hugging Face TrainerCallback (and imports transformers).
"""

from bslz.train.backslash import BackSlash
from bslz.train.moments import GGFit
from bslz.train.report import RateReport, TensorRate
from bslz.train.selection import PrecisionWarning, default_select

__all__ = ["BackSlash", "GGFit", "PrecisionWarning", "RateReport", "TensorRate", "default_select"]
