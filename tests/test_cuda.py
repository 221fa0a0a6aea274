"""The training hook and the torch API with tensors on a CUDA GPU: skipped without one (CI has none;
`benchmarks/device/cuda_checks.sh` runs them on the device machine)."""

import numpy as np
import pytest
import torch
from torch import nn

import bslz.torch
from bslz.train import BackSlash
from test_train import STEP, bs_optimizer, mlp, regression_data, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = "cuda"


@pytest.mark.parametrize("per_tensor", [False, True])
def test_a_step_on_the_gpu_is_the_step_on_the_cpu(per_tensor):
    """The GPU's multi-tensor update and the CPU's fused kernel: the same fit and the same weights."""
    on_cpu, on_gpu = mlp(), mlp().to(CUDA)
    bs_cpu = BackSlash(on_cpu, 50.0, step=STEP, per_tensor=per_tensor)
    bs_gpu = BackSlash(on_gpu, 50.0, step=STEP, per_tensor=per_tensor)
    assert bs_gpu.nu == pytest.approx(bs_cpu.nu, rel=1e-9)
    assert [f.nu for f in bs_gpu.tensor_fits] == pytest.approx([f.nu for f in bs_cpu.tensor_fits], rel=1e-9)
    bs_cpu.step()
    bs_gpu.step()
    for (name, a), b in zip(on_cpu.state_dict().items(), on_gpu.state_dict().values()):
        assert b.device.type == CUDA
        np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), rtol=1e-5, atol=1e-8, err_msg=name)


def test_training_on_the_gpu_lowers_the_rate_and_exports_a_file_that_loads_back(tmp_path):
    bits, sizes = [], []
    for lam in (0.0, 20.0):
        model = mlp().to(CUDA)
        bs = BackSlash(model, lam, step=STEP, reestimate_every=10)
        train(model, bs, bs_optimizer(model, bs), device=CUDA)
        report = bs.report()
        assert bs.fits == 5 and len(bs.reports) == 4
        bits.append(report.bits_per_param)
        path = tmp_path / f"lam{lam}.bslz"
        bs.export(path)
        sizes.append(path.stat().st_size)
        loaded = bslz.torch.load_file(path, device=CUDA)
        assert all(t.device.type == CUDA for t in loaded.values())
        fresh = mlp(seed=9).to(CUDA)
        fresh.load_state_dict(loaded)
        for name in bs.names:  # quantized on the lattice k * step, at most step / 2 away
            q = fresh.state_dict()[name].double() / STEP
            assert torch.allclose(q, q.round(), atol=1e-4)
            assert (fresh.state_dict()[name] - model.state_dict()[name]).abs().max() <= STEP / 2 * (1 + 1e-5)
        x, _ = regression_data(device=CUDA)
        with torch.no_grad():
            assert torch.allclose(fresh(x), model(x), atol=0.2)
    assert bits[1] < 0.8 * bits[0] and sizes[1] < sizes[0]


def test_loss_mode_on_the_gpu_has_the_reference_gradient():
    values = torch.from_numpy(np.random.default_rng(5).laplace(0, 0.05, (50, 20)).astype(np.float32))
    values[1, :3] = 0.0
    on_cpu, on_gpu = nn.Parameter(values.clone()), nn.Parameter(values.clone().to(CUDA))
    for p in (on_cpu, on_gpu):
        BackSlash([p], 4.0, mode="loss").rate_penalty().backward()
    assert on_gpu.grad.device.type == CUDA
    np.testing.assert_allclose(on_gpu.grad.cpu().numpy(), on_cpu.grad.numpy(), rtol=1e-5, atol=1e-9)
    assert torch.all(on_gpu.grad[1, :3] == 0)


def test_gpu_tensors_of_every_float_dtype_round_trip_exactly(tmp_path):
    g = torch.Generator(device=CUDA).manual_seed(2)
    base = torch.randn(300, 70, generator=g, device=CUDA) * 0.05
    tensors = {
        "f32": base,
        "bf16": base.to(torch.bfloat16),
        "f16": base.to(torch.float16),
        "e4m3": base.to(torch.float8_e4m3fn),
        "e5m2": base.to(torch.float8_e5m2),
        "ids": torch.arange(-500, 500, device=CUDA),
    }
    for loaded in (
        bslz.torch.load(bslz.torch.save(tensors), device=CUDA),
        _through_a_file(tensors, tmp_path / "t.bslz"),
    ):
        assert set(loaded) == set(tensors)
        for name, t in tensors.items():
            assert loaded[name].device.type == CUDA and loaded[name].dtype == t.dtype
            assert torch.equal(loaded[name].view(torch.uint8), t.view(torch.uint8)), name


def _through_a_file(tensors, path):
    bslz.torch.save_file(tensors, path)
    return bslz.torch.load_file(path, device=CUDA)


def test_gpu_tensors_compress_lossily_to_a_target():
    weight = torch.randn(512, 256, device=CUDA) * 0.05
    data = bslz.torch.save({"w": weight}, snr=30.0)
    back = bslz.torch.load(data, device=CUDA)["w"]
    snr = 10 * torch.log10(weight.double().square().sum() / (weight.double() - back.double()).square().sum())
    assert back.device.type == CUDA and 30.0 <= snr.item() < 40.0


def test_safe_open_on_the_gpu_gives_tensors_and_row_slices_there():
    weight = (torch.randn(2000, 384, device=CUDA) * 0.02).to(torch.bfloat16)  # 3 chunks
    packed = bslz.torch.save({"embedding": weight})
    with bslz.safe_open(packed, framework="pt", device=CUDA) as f:
        whole, rows = f.get_tensor("embedding"), f.get_slice("embedding")[700:900]
    assert whole.device.type == rows.device.type == CUDA
    assert torch.equal(whole, weight) and torch.equal(rows, weight[700:900])
