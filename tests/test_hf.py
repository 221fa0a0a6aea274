"""bslz.hf: a tiny random BERT saved, compressed (single file and sharded, lossless and lossy), loaded back."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bslz  # noqa: E402
import bslz.hf  # noqa: E402
from bslz.cli import checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    model = transformers.BertModel(config).eval()
    directory = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(directory, safe_serialization=True)
    return model, directory


def outputs(model):
    ids = torch.tensor([[1, 5, 42, 7, 99, 2], [1, 300, 12, 13, 14, 2]])
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


def compress_dir(src, dst, **kwargs):
    plan = checkpoint.plan_compress(src)
    checkpoint.run_plan(src, dst, plan, lambda i, o, n: bslz.compress_file(i, o, **kwargs))


def test_lossless_single_file_gives_identical_outputs(tiny_bert, tmp_path):
    model, directory = tiny_bert
    out = tmp_path / "bslz"
    compress_dir(directory, out)
    assert (out / "model.bslz").is_file() and (out / "config.json").is_file()
    loaded = bslz.hf.from_pretrained(out)
    assert type(loaded) is type(model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert torch.equal(outputs(loaded), outputs(model))


def test_explicit_model_class_and_file_path(tiny_bert, tmp_path):
    model, directory = tiny_bert
    out = tmp_path / "bslz"
    compress_dir(directory, out)
    loaded = bslz.hf.from_pretrained(out / "model.bslz", model_class=transformers.BertModel)
    assert torch.equal(outputs(loaded), outputs(model))


def test_lossy_outputs_close(tiny_bert, tmp_path):
    model, directory = tiny_bert
    out = tmp_path / "bslz"
    compress_dir(directory, out, bits=8, min_lossy_elements=1024)
    loaded = bslz.hf.from_pretrained(out)
    a, b = outputs(model), outputs(loaded)
    assert not torch.equal(a, b)  # it was really quantized
    cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))
    assert float(cos.min()) > 0.99


def test_sharded_checkpoint(tiny_bert, tmp_path):
    from safetensors.torch import load_file, save_file

    model, directory = tiny_bert
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for name in os.listdir(directory):
        if not name.endswith(".safetensors"):
            (sharded / name).write_bytes((directory / name).read_bytes())
    tensors = load_file(directory / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, sharded / shard, metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
        "weight_map": weight_map,
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "bslz"
    compress_dir(sharded, out)
    assert (out / "model.bslz.index.json").is_file()
    loaded = bslz.hf.from_pretrained(out)
    assert torch.equal(outputs(loaded), outputs(model))


def test_folder_without_bslz_files_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(bslz.InvalidArgumentError):
        bslz.hf.from_pretrained(tmp_path)
