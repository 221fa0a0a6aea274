"""Load a compressed Hugging Face model folder straight into `transformers` (optional extra `hf`).

A folder that `bslz compress DIR -o OUT` wrote holds `config.json` (and tokenizer files) copied
unchanged, plus either one `model.bslz` or shards listed in `model.bslz.index.json` (the
`model.safetensors.index.json` with its `weight_map` renamed to the `.bslz` shards). This module
decodes every tensor to torch, builds the config from the folder and hands both to
`model_class.from_pretrained(None, config=config, state_dict=state_dict)`, the public
transformers path for "weights from memory" (no file is written, transformers is not patched).
An auto class (`AutoModel`, the default) is first resolved to the concrete class for the config,
because transformers 5.x auto classes do not accept `None` as the path (see `concrete_class`).

`transformers` (and torch) are imported here only, never by the rest of bslz.
"""

import json
import os

from bslz.cli.paths import BSLZ_INDEX_SUFFIX, BSLZ_SUFFIX
from bslz.errors import InvalidArgumentError

SINGLE_FILE = "model" + BSLZ_SUFFIX
INDEX_FILE = "model" + BSLZ_INDEX_SUFFIX


def bslz_files(path_or_dir):
    """The `.bslz` file(s) holding a model: (config directory, [files in load order])."""
    path = os.fspath(path_or_dir)
    if os.path.isfile(path):
        if path.endswith(BSLZ_INDEX_SUFFIX):
            directory = os.path.dirname(os.path.abspath(path))
            return directory, _shards_from_index(path, directory)
        return os.path.dirname(os.path.abspath(path)), [path]
    if not os.path.isdir(path):
        raise InvalidArgumentError(f"{path}: no such file or directory")
    index = os.path.join(path, INDEX_FILE)
    if os.path.isfile(index):
        return path, _shards_from_index(index, path)
    single = os.path.join(path, SINGLE_FILE)
    if os.path.isfile(single):
        return path, [single]
    indexes = sorted(n for n in os.listdir(path) if n.endswith(BSLZ_INDEX_SUFFIX))
    if len(indexes) == 1:
        return path, _shards_from_index(os.path.join(path, indexes[0]), path)
    files = sorted(n for n in os.listdir(path) if n.endswith(BSLZ_SUFFIX))
    if len(files) == 1 and not indexes:
        return path, [os.path.join(path, files[0])]
    raise InvalidArgumentError(
        f"{path}: expected {SINGLE_FILE}, {INDEX_FILE}, or exactly one .bslz file or .bslz index;"
        f" found {len(files)} .bslz files and {len(indexes)} indexes"
    )


def _shards_from_index(index_path, directory):
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(f"{index_path}: not a bslz index (no weight_map): {exc}") from None
    if not isinstance(weight_map, dict):
        raise InvalidArgumentError(f"{index_path}: weight_map is not an object")
    shards = []
    for shard in weight_map.values():
        if not isinstance(shard, str) or os.path.basename(shard) != shard:
            raise InvalidArgumentError(f"{index_path}: shard name {shard!r} is not a file name in this folder")
        if shard not in shards:
            shards.append(shard)
    return [os.path.join(directory, s) for s in shards]


def load_state_dict(path_or_dir):
    """Every tensor of the model's `.bslz` file(s) as a dict of torch tensors (decoded, in memory)."""
    from bslz.reader import safe_open

    _, files = bslz_files(path_or_dir)
    state_dict = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for name, tensor in f.iter_tensors():
                if name in state_dict:
                    raise InvalidArgumentError(f"{file}: tensor {name!r} is also in another shard")
                state_dict[name] = tensor
    return state_dict


def from_pretrained(path_or_dir, model_class=None, **kwargs):
    """A transformers model built from a compressed model folder (or one `.bslz` file / index beside config.json).

    `model_class` defaults to `transformers.AutoModel`; `kwargs` go to its `from_pretrained`
    (for example `dtype=`). The config comes from `AutoConfig.from_pretrained(folder)` unless
    `config=` is passed.
    """
    try:
        import transformers
    except ImportError as exc:
        raise ImportError("bslz.hf needs transformers: pip install 'bslz[hf]'") from exc
    directory, _ = bslz_files(path_or_dir)
    if model_class is None:
        model_class = transformers.AutoModel
    config = kwargs.pop("config", None)
    if config is None:
        config = transformers.AutoConfig.from_pretrained(directory)
    model_class = concrete_class(model_class, config)
    state_dict = load_state_dict(path_or_dir)
    return model_class.from_pretrained(None, config=config, state_dict=state_dict, **kwargs)


def concrete_class(model_class, config):
    """The model class itself, or for an auto class (`AutoModel`, ...) the class it maps this config to.

    transformers 5.x auto classes refuse `from_pretrained(None, ...)` (they look the path up to decide
    about remote code), so the lookup they would do is done here: the auto class's own mapping of
    config types to classes, `_model_mapping` (the table `AutoModel.from_config` uses; not a public
    name, but stable through 4.x and 5.x). Configs that need remote code are not supported.
    """
    mapping = getattr(model_class, "_model_mapping", None)
    if mapping is None:
        return model_class
    try:
        return mapping[type(config)]
    except KeyError:
        raise InvalidArgumentError(
            f"{model_class.__name__} has no model class for {type(config).__name__}; pass model_class= explicitly"
        ) from None
