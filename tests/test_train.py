import json
import math
import os
import socket
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

import bslz.torch
from bslz.codec.gg import fit_generalized_gaussian
from bslz.errors import InvalidArgumentError
from bslz.formats.container import ContainerReader
from bslz.lossy import STEPS_METADATA_KEY
from bslz.train import BackSlash, PrecisionWarning, RateReport

STEP = 0.01  # planned quantizer step of the MLP tests (its weights are about 0.1)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: one thread is fastest, and spinning OpenMP threads crawl on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(16, 128), nn.ReLU(), nn.LayerNorm(128), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1)
    )


def regression_data(seed=1, n=256, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    return x.to(device), (x[:, :4].sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)).to(device)


def train(model, bs, optimizer, steps=40, device="cpu"):
    x, y = regression_data(device=device)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        if bs is not None and bs.mode == "loss":
            loss = loss + bs.rate_penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def bs_optimizer(model, bs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    bs.attach(optimizer)
    return optimizer


def train_mlp(lam, steps=40, **options):
    model = mlp()
    bs = BackSlash(model, lam, step=STEP, reestimate_every=10, **options)
    train(model, bs, bs_optimizer(model, bs), steps)
    return model, bs


def hand_update(theta, lam, nu, n, eps):
    theta = theta.astype(np.float64)
    return theta - lam * nu / n * np.sign(theta) * (np.abs(theta) + eps) ** (nu - 1)


# ---- the rate falls as lambda rises ----------------------------------------------------------


def test_rate_and_file_size_fall_as_lambda_rises(tmp_path):
    bits, sizes, sparsity = [], [], []
    for lam in (0.0, 5.0, 20.0):
        model, bs = train_mlp(lam)
        report = bs.report()
        bs.export(tmp_path / f"lam{lam}.bslz")
        bits.append(report.bits_per_param)
        sizes.append(os.path.getsize(tmp_path / f"lam{lam}.bslz"))
        sparsity.append(report.sparsity)
    assert bits[0] > bits[1] > bits[2]
    assert sizes[0] > sizes[1] > sizes[2]
    assert sparsity[0] < sparsity[1] < sparsity[2]
    assert bits[2] < 0.8 * bits[0]


# ---- the two modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1.0, 0.1])
def test_reference_update_matches_a_hand_computation(eps):
    rng = np.random.default_rng(3)
    values = rng.laplace(0, 0.05, (40, 30)).astype(np.float32)
    values[0, :5] = 0.0
    p = nn.Parameter(torch.from_numpy(values.copy()))
    lam = 7.0
    bs = BackSlash([p], lam, eps=eps)
    nu, beta = fit_generalized_gaussian(values)
    assert bs.nu == pytest.approx(nu, rel=1e-9)
    assert bs.beta == pytest.approx(beta, rel=1e-9)
    bs.step()
    expected = hand_update(values, lam, nu, values.size, eps)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-5, atol=1e-7)
    assert np.all(p.detach().numpy()[0, :5] == 0)  # sign(0) = 0: zeros stay put


@pytest.mark.small
@pytest.mark.parametrize("eps", [1.0, 1e-3, 0.0])
@pytest.mark.parametrize("nu", [0.1, 0.5, 1.0, 2.0, 3.0])
def test_fused_update_matches_float64_over_all_magnitudes(eps, nu):
    """The fused float32 kernel (own exp / log polynomials) against the float64 formula, from
    subnormals to 1e30, both signs: the step is within 2e-5 of exact, zeros stay, NaN stays NaN."""
    from bslz.train.update import apply_rate_step

    magnitudes = np.logspace(-44, 30, 3001)
    values = np.concatenate([magnitudes, -magnitudes, [0.0, -0.0, np.nan]]).astype(np.float32)
    p = torch.from_numpy(values.copy())
    coefficient = 1e-3
    apply_rate_step([p], [nu], coefficient, eps)
    got = p.numpy().astype(np.float64)
    x = values.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        step = coefficient * nu * np.sign(x) * np.maximum(np.abs(x) + eps, np.finfo(np.float32).tiny) ** (nu - 1)
        expected = (x - step).astype(np.float32).astype(np.float64)
        spacing = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    finite = np.isfinite(expected) & (np.abs(step) / (coefficient * nu) < 1e38)  # the power is a float32
    assert finite.sum() > 5000
    err = np.abs(got[finite] - expected[finite])
    assert np.all(err <= 2e-5 * np.abs(step[finite]) + spacing[finite])
    assert got[-3] == 0 and got[-2] == 0 and np.isnan(got[-1])


@pytest.mark.small
def test_fused_and_torch_updates_agree():
    """Contiguous float32 CPU tensors take the fused kernel, the others torch: the same update."""
    rng = np.random.default_rng(6)
    values = rng.laplace(0, 0.05, (300, 200)).astype(np.float32)
    values[:, ::9] = 0.0
    fused = nn.Parameter(torch.from_numpy(values.copy()))
    strided = nn.Parameter(torch.from_numpy(values.T.copy()).T)  # not contiguous: torch operations
    assert not strided.is_contiguous()
    for params in ([fused], [strided]):
        BackSlash(params, 50.0, eps=1.0).step()
    np.testing.assert_allclose(fused.detach().numpy(), strided.detach().numpy(), rtol=2e-7, atol=1e-9)
    assert np.all(fused.detach().numpy()[:, ::9] == 0) and not torch.equal(fused.detach(), torch.from_numpy(values))


@pytest.mark.small
@pytest.mark.parametrize("eps", [1.0, 0.0])
def test_multi_tensor_update_matches_the_per_tensor_one(eps):
    """The accelerator's path (torch's multi-tensor operations, run here on the CPU) gives the update
    of the per-tensor path, each tensor with its own shape, in batches capped by size."""
    from bslz.train.update import _batches, _foreach_rate_step, _torch_rate_step

    rng = np.random.default_rng(8)
    shapes = [(40, 30), (7,), (3, 5, 11), (1000,)]
    values = [rng.laplace(0, 0.05, s).astype(np.float32) for s in shapes]
    values[0][:, ::4] = 0.0
    nus, scales = [0.4, 1.0, 1.7, 2.5], [1e-3, 2e-3, 5e-4, 1e-2]
    one_by_one = [torch.from_numpy(v.copy()) for v in values]
    for p, nu, scale in zip(one_by_one, nus, scales):
        _torch_rate_step(p, nu, scale, eps, {})
    together = [torch.from_numpy(v.copy()) for v in values]
    batches = list(_batches(list(zip(together, nus, scales)), cap=1100))
    assert [len(b) for b in batches] == [1, 2, 1]  # 1200 (over the cap) | 7 + 165 | 1000
    for batch in batches:
        _foreach_rate_step(batch, eps)
    for a, b, v in zip(one_by_one, together, values):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-9)
        assert not np.array_equal(b.numpy(), v)
    assert np.all(together[0].numpy()[:, ::4] == 0)


def test_per_tensor_mode_uses_each_tensors_shape():
    rng = np.random.default_rng(4)
    a = rng.laplace(0, 0.05, 3000).astype(np.float32)
    b = rng.normal(0, 0.05, 2000).astype(np.float32)
    pa, pb = nn.Parameter(torch.from_numpy(a.copy())), nn.Parameter(torch.from_numpy(b.copy()))
    bs = BackSlash([("a", pa), ("b", pb)], 3.0, per_tensor=True)
    nu_a, nu_b = fit_generalized_gaussian(a)[0], fit_generalized_gaussian(b)[0]
    assert nu_a < 1.3 and nu_b > 1.7
    assert bs.nu == pytest.approx(fit_generalized_gaussian(np.concatenate([a, b]))[0], rel=1e-9)
    bs.step()
    n = a.size + b.size  # N stays the total count
    np.testing.assert_allclose(pa.detach().numpy(), hand_update(a, 3.0, nu_a, n, 1.0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pb.detach().numpy(), hand_update(b, 3.0, nu_b, n, 1.0), rtol=1e-5, atol=1e-7)


def test_loss_mode_penalty_has_the_reference_gradient():
    rng = np.random.default_rng(5)
    values = rng.laplace(0, 0.05, (50, 20)).astype(np.float32)
    values[1, :3] = 0.0
    p = nn.Parameter(torch.from_numpy(values.copy()))
    lam, eps = 4.0, 1.0
    bs = BackSlash([p], lam, mode="loss", eps=eps)
    nu = bs.nu
    penalty = bs.rate_penalty()
    expected_value = lam / values.size * np.sum((np.abs(values.astype(np.float64)) + eps) ** nu - eps**nu)
    assert penalty.item() == pytest.approx(expected_value, rel=1e-5)
    penalty.backward()
    expected_grad = (values - hand_update(values, lam, nu, values.size, eps)).astype(np.float32)
    np.testing.assert_allclose(p.grad.numpy(), expected_grad, rtol=1e-5, atol=1e-9)
    before = p.detach().clone()
    bs.step()  # loss mode: step() only counts and re-estimates
    assert torch.equal(p.detach(), before) and bs.steps == 1


def test_loss_mode_without_soft_clipping_is_lambda_times_rate():
    values = np.array([0.0, 0.02, -0.5, 1.5, -0.001], dtype=np.float32)
    p = nn.Parameter(torch.from_numpy(values.copy()))
    bs = BackSlash([p], 2.0, mode="loss", eps=0.0)
    nu = bs.nu
    penalty = bs.rate_penalty()
    assert penalty.item() == pytest.approx(2.0 / 5 * np.sum(np.abs(values.astype(np.float64)) ** nu), rel=1e-5)
    assert bs.rate() == pytest.approx(np.mean(np.abs(values.astype(np.float64)) ** nu), rel=1e-6)
    penalty.backward()
    assert torch.isfinite(p.grad).all() and p.grad[0] == 0


def test_rate_penalty_refuses_reference_mode():
    with pytest.raises(InvalidArgumentError):
        BackSlash(mlp(), 1.0).rate_penalty()


def test_loss_mode_lowers_the_rate_too():
    bits = []
    for lam in (0.0, 10.0):  # Adam normalises the penalty's gradient: lam means something else here
        model = mlp()
        bs = BackSlash(model, lam, step=STEP, mode="loss", reestimate_every=10)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        bs.attach(optimizer)
        train(model, bs, optimizer, 40)
        bits.append(bs.report().bits_per_param)
    assert bits[1] < bits[0] - 0.1


# ---- the hook and the schedule ---------------------------------------------------------------


def test_attach_runs_after_each_optimizer_step_and_remove_detaches():
    model = mlp()
    bs = BackSlash(model, 5.0, step=STEP)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: only the rate term moves weights
    handle = bs.attach(optimizer)
    weight = model[0].weight
    before = weight.detach().clone().numpy()
    train(model, None, optimizer, 1)
    assert bs.steps == 1
    expected = hand_update(before, 5.0, bs.nu, bs.num_params, 1.0)
    np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-5, atol=1e-7)
    handle.remove()
    after = weight.detach().clone()
    train(model, None, optimizer, 2)
    assert bs.steps == 1 and torch.equal(weight.detach(), after)


def test_nu_is_reestimated_every_k_steps_and_reported():
    values = torch.from_numpy(np.random.default_rng(6).normal(0, 0.1, 5000).astype(np.float32))
    p = nn.Parameter(values.clone())
    seen = []
    bs = BackSlash([p], 0.0, reestimate_every=3, on_report=seen.append, step=0.05)
    assert bs.fits == 1 and bs.nu == pytest.approx(2.0, abs=0.15)
    laplace = torch.from_numpy(np.random.default_rng(7).laplace(0, 0.1, 5000).astype(np.float32))
    with torch.no_grad():
        p.copy_(laplace)
    bs.step()
    bs.step()
    assert bs.fits == 1 and bs.nu == pytest.approx(2.0, abs=0.15)  # not yet K steps
    bs.step()
    assert bs.fits == 2 and bs.fitted_at == 3 and bs.nu == pytest.approx(1.0, abs=0.1)
    for _ in range(4):
        bs.step()
    assert bs.fits == 3 and bs.fitted_at == 6
    assert [r.steps for r in seen] == [3, 6] and bs.reports == seen
    assert isinstance(seen[0], RateReport) and seen[0].nu == pytest.approx(1.0, abs=0.1)


def test_report_every_zero_turns_periodic_reports_off():
    p = nn.Parameter(torch.randn(100))
    bs = BackSlash([p], 0.0, reestimate_every=2, report_every=0)
    for _ in range(4):
        bs.step()
    assert bs.reports == [] and bs.fits == 3


def test_state_dict_round_trip():
    model, bs = train_mlp(5.0, steps=12)
    other = BackSlash(mlp(), 5.0, reestimate_every=10)
    other.load_state_dict(bs.state_dict())
    assert (other.steps, other.fits, other.nu, other.planned_step) == (12, 2, bs.nu, STEP)


# ---- which parameters ------------------------------------------------------------------------


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(8)
        self.attn = nn.MultiheadAttention(8, 2)
        self.proj = nn.Linear(8, 8)
        self.frozen = nn.Linear(8, 8, bias=False)
        self.frozen.weight.requires_grad_(False)
        self.scale = nn.Parameter(torch.ones(8))


def test_default_selection_takes_layer_weights_not_biases_or_norms():
    bs = BackSlash(Zoo(), 1.0)
    assert bs.names == ["embed.weight", "conv.weight", "attn.in_proj_weight", "attn.out_proj.weight", "proj.weight"]


def test_selection_by_names_and_by_callable():
    model = Zoo()
    assert BackSlash(model, 1.0, select=["proj.weight", "proj.bias"]).names == ["proj.weight", "proj.bias"]
    by_callable = BackSlash(model, 1.0, select=lambda name, p, module: isinstance(module, nn.LayerNorm))
    assert by_callable.names == ["norm.weight", "norm.bias"]
    with pytest.raises(InvalidArgumentError):
        BackSlash(model, 1.0, select=["nope.weight"])
    with pytest.raises(InvalidArgumentError):
        BackSlash(model, 1.0, select=lambda *args: False)


def test_tied_weights_are_counted_once_and_marked_under_every_name(tmp_path):
    model = nn.Sequential(nn.Embedding(64, 64), nn.Linear(64, 64), nn.Linear(64, 64, bias=False))
    model[2].weight = model[0].weight
    bs = BackSlash(model, 1.0, step=0.01)
    assert bs.names == ["0.weight", "1.weight"] and bs.num_params == 2 * 64 * 64
    steps = json.loads(bs.state_dict_metadata()[STEPS_METADATA_KEY])
    assert set(steps) == {"0.weight", "1.weight", "2.weight"}
    bs.export(tmp_path / "tied.bslz")
    loaded = bslz.torch.load_file(tmp_path / "tied.bslz")
    assert torch.equal(loaded["0.weight"], loaded["2.weight"])


def test_low_precision_parameters_warn():
    model = mlp().to(torch.bfloat16)
    with pytest.warns(PrecisionWarning, match="low-precision"):
        BackSlash(model, 1.0)
    model = mlp()
    model[0].to(torch.float16)
    with pytest.warns(PrecisionWarning, match="0.weight"):
        BackSlash(model, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lam": -1.0},
        {"lam": math.nan},
        {"lam": 1.0, "mode": "l1"},
        {"lam": 1.0, "eps": -1.0},
        {"lam": 1.0, "step": 0.0},
        {"lam": 1.0, "reestimate_every": 0},
        {"lam": 1.0, "report_every": -1},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(InvalidArgumentError):
        BackSlash(mlp(), **kwargs)


def test_export_needs_a_module(tmp_path):
    bs = BackSlash([nn.Parameter(torch.randn(10))], 1.0)
    with pytest.raises(InvalidArgumentError):
        bs.export(tmp_path / "x.bslz")


# ---- marks and export ------------------------------------------------------------------------


def test_state_dict_metadata_records_steps_nu_and_lambda():
    model, bs = train_mlp(5.0, steps=5)
    metadata = bs.state_dict_metadata()
    assert json.loads(metadata[STEPS_METADATA_KEY]) == {"0.weight": STEP, "3.weight": STEP, "5.weight": STEP}
    assert float(metadata["bslz.nu"]) == bs.nu and float(metadata["bslz.lambda"]) == 5.0
    assert all(isinstance(v, str) for v in metadata.values())


def test_bslz_compress_honours_the_metadata(tmp_path):
    import safetensors.torch

    import bslz

    model, bs = train_mlp(20.0, steps=10)
    safetensors.torch.save_file(model.state_dict(), tmp_path / "ckpt.safetensors", metadata=bs.state_dict_metadata())
    bslz.compress_file(tmp_path / "ckpt.safetensors", tmp_path / "ckpt.bslz")  # no target: the marks decide
    reader = ContainerReader(tmp_path / "ckpt.bslz")
    try:
        quantized = {e["name"]: e["step"] for e in reader.entries if e["coding"] == "quantized"}
    finally:
        reader.close()
    assert quantized == {name: STEP for name in bs.names}


def test_default_step_follows_the_first_fit():
    bs = BackSlash(mlp(), 1.0)
    assert bs.planned_step == pytest.approx(bs.beta / 8)
    first = bs.planned_step
    for _ in range(3):
        bs.estimate()
    assert bs.planned_step == first  # fixed after the first fit: reports stay comparable


def test_exported_file_loads_back_quantized_on_the_lattice(tmp_path):
    model, bs = train_mlp(20.0)
    path = tmp_path / "model.bslz"
    bs.export(path)
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loaded = bslz.torch.load_file(path)
    fresh = mlp(seed=9)
    fresh.load_state_dict(loaded)
    for name, value in fresh.state_dict().items():
        if name in bs.names:
            q = value.numpy().astype(np.float64) / STEP
            np.testing.assert_allclose(q, np.round(q), atol=1e-4)  # on the lattice k * step
            small = np.abs(original[name].numpy()) < STEP / 2
            assert small.any() and np.all(value.numpy()[small] == 0)  # exact zeros
            assert np.all(value.numpy()[~small] != 0)
            assert np.max(np.abs(value.numpy() - original[name].numpy())) <= STEP / 2 * (1 + 1e-5)
        else:
            assert torch.equal(value, original[name])  # biases and norms: lossless
    x, _ = regression_data()
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=0.2)


def test_predicted_size_matches_the_exported_payload(tmp_path):
    for lam in (0.0, 20.0):
        model, bs = train_mlp(lam)
        report = bs.report()
        bs.export(tmp_path / "model.bslz")
        reader = ContainerReader(tmp_path / "model.bslz")
        try:
            quantized = {e["name"]: e["length"] for e in reader.entries if e["coding"] == "quantized"}
        finally:
            reader.close()
        assert set(quantized) == set(bs.names)
        payload = sum(quantized.values())
        assert abs(report.predicted_bytes - payload) <= 0.02 * payload
        for t in report.tensors:
            assert abs(t.bits / 8 - quantized[t.name]) <= 8  # all but the padding of the orders


# ---- torch.distributed -----------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = mlp(seed=rank)  # different weights on each rank until DDP broadcasts rank 0's
        bs = BackSlash(model, 5.0, step=STEP, reestimate_every=2)
        first_nu = bs.nu
        ddp = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
        bs.attach(optimizer)
        x, y = regression_data(seed=10 + rank, n=64)  # each rank its own batch
        nus = []
        for _ in range(5):
            loss = nn.functional.mse_loss(ddp(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            nus.append(bs.nu)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"first_nu": first_nu, "nus": nus, "fits": bs.fits, "state": state}, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_share_nu_and_parameters(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    both = torch.cat([p.detach().reshape(-1) for seed in (0, 1) for p in BackSlash(mlp(seed), 1.0).params])
    assert r0["first_nu"] == r1["first_nu"]  # pooled over both ranks' different initial weights
    assert r0["first_nu"] == pytest.approx(fit_generalized_gaussian(both.numpy())[0], rel=1e-9)
    assert r0["nus"] == r1["nus"] and r0["fits"] == r1["fits"] == 3
    for name in r0["state"]:
        assert torch.equal(r0["state"][name], r1["state"][name]), name


# ---- Hugging Face ----------------------------------------------------------------------------


def _fresh_hf(monkeypatch, transformers_module):
    monkeypatch.setitem(sys.modules, "transformers", transformers_module)
    monkeypatch.delitem(sys.modules, "bslz.train.hf", raising=False)
    import bslz.train.hf

    return bslz.train.hf


def test_hf_module_says_it_needs_transformers(monkeypatch):
    with pytest.raises(ImportError, match="needs the transformers package"):
        _fresh_hf(monkeypatch, None)


def _drive_callback(callback_class, tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    callback = callback_class(lam=5.0, step=STEP, reestimate_every=2, export_path=tmp_path / "hf.bslz")
    state = types.SimpleNamespace(is_world_process_zero=True)
    callback.on_train_begin(None, state, None, model=model, optimizer=optimizer)
    x, y = regression_data()
    for _ in range(4):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        callback.on_step_end(None, state, None, model=model)
    logs = {"loss": loss.item()}
    callback.on_log(None, state, None, logs=logs)
    callback.on_train_end(None, state, None, model=model)
    assert callback.backslash.steps == 4 and callback.backslash.fits == 3
    assert logs["bslz/nu"] == callback.backslash.nu and "bslz/bits_per_param" in logs
    model.load_state_dict(bslz.torch.load_file(tmp_path / "hf.bslz"))


def test_hf_callback_with_a_stand_in_transformers(monkeypatch, tmp_path):
    stand_in = types.ModuleType("transformers")
    stand_in.TrainerCallback = type("TrainerCallback", (), {})
    _drive_callback(_fresh_hf(monkeypatch, stand_in).BackSlashCallback, tmp_path)


def test_hf_callback_with_transformers(tmp_path):
    pytest.importorskip("transformers")
    from bslz.train.hf import BackSlashCallback

    _drive_callback(BackSlashCallback, tmp_path)


@pytest.mark.small
def test_fused_update_is_seen_by_autograd_as_in_place():
    """A graph that saved the weight before the update refuses to backpropagate, as with torch's own
    in-place operations (the fused kernel writes through numpy)."""
    p = nn.Parameter(torch.full((64,), 0.5))
    loss = (p * p).sum()  # saves p for the backward pass
    BackSlash([p], 5.0, step=0.01).step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
