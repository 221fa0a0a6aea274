"""Marks: what training tells the codec, as safetensors metadata, and the export to `.bslz`.

"bslz.steps" (`bslz.lossy.STEPS_METADATA_KEY`) maps each trained tensor to the step its rate was
computed for; `bslz compress` (and `bslz.compress_file` with no target) quantizes exactly those
tensors at those steps, so weights the rate term drove below step / 2 are stored as exact zeros.
"""

import json

import torch

from bslz.lossy import STEPS_METADATA_KEY
from bslz.torch import save_file

NU_METADATA_KEY = "bslz.nu"
BETA_METADATA_KEY = "bslz.beta"
LAMBDA_METADATA_KEY = "bslz.lambda"


def marks_metadata(steps_by_name, nu, beta, lam):
    """{str: str} safetensors metadata: the steps as a JSON object, nu, beta and lambda as numbers."""
    return {
        STEPS_METADATA_KEY: json.dumps({name: float(s) for name, s in steps_by_name.items()}, sort_keys=True),
        NU_METADATA_KEY: repr(float(nu)),
        BETA_METADATA_KEY: repr(float(beta)),
        LAMBDA_METADATA_KEY: repr(float(lam)),
    }


def state_dict_names(model, params):
    """{id(param): [state_dict names]} for `params` (a tied tensor has several names)."""
    wanted = {id(p) for p in params}
    names = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in wanted:
            names.setdefault(id(tensor), []).append(name)
    return names


def exportable_tensors(state_dict):
    """{name: contiguous CPU tensor} that safetensors accepts: tensors sharing storage are copied."""
    out, storages = {}, set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        key = t.untyped_storage().data_ptr() if t.numel() else None
        if key is not None and key in storages:
            t = t.clone()
        elif key is not None:
            storages.add(key)
        out[name] = t
    return out


def export_model(model, path, metadata, overwrite=True):
    """Write `model.state_dict()` to the `.bslz` file `path` with `metadata`; returns the CompressReport."""
    with torch.no_grad():
        tensors = exportable_tensors(model.state_dict())
    return save_file(tensors, path, metadata=metadata, overwrite=overwrite)
