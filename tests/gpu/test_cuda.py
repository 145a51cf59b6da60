"""The GPU checks (`benchmarks/gpu_check.sh` runs them on a lent GPU; without one every test skips, saying why).

CUDA against the CPU on every official fixture, fp16 / bf16 autocast against fp32, a training step whose gradients
match the CPU's, and a 1-GPU nccl torchrun run of `litvit train`.
"""

import json
import math

import pytest
import torch

from litvit.bench.cli import main as bench_main
from litvit.bench.official_style import official_style
from litvit.bench.profile import OPTIMIZER

from ..models.test_parity import FIXTURE_FILES, build_from_fixture
from ..train.helpers import torchrun

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU (benchmarks/gpu_check.sh runs these)"
)

CUDA_VS_CPU = 1e-4  # TF32 is off by default for matmuls; cuDNN / cuBLAS summation order differs from the CPU's


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _fixture_model(path):
    fixture = torch.load(path, weights_only=True)
    model = build_from_fixture(fixture["name"], fixture["config"]).eval()
    model.load_state_dict(fixture["state_dict"])
    return model, fixture


def _outputs(out):
    return [out] if isinstance(out, torch.Tensor) else list(out)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_cuda_matches_official_fixture(path):
    """Every family on the GPU reproduces the official outputs (made on the CPU) within 1e-4."""
    model, fixture = _fixture_model(path)
    with torch.no_grad():
        outs = _outputs(model.cuda()(fixture["input"].cuda()))
    for ours, expected in zip(outs, fixture["outputs"]):
        diff = (ours.cpu() - expected).abs().max().item()
        assert diff <= CUDA_VS_CPU, f"{fixture['name']}: CUDA max |diff| {diff:.2e} > {CUDA_VS_CPU}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", ["litv2_cls_tiny", "lit_smb_cls_tiny", "lit_ti_cls_tiny"])
def test_autocast_close_to_fp32(name, dtype):
    """Autocast keeps the logits finite and near fp32 (relative to their spread), odd batch included."""
    model, fixture = _fixture_model(next(p for p in FIXTURE_FILES if p.stem == name))
    model = model.cuda()
    x = torch.cat([fixture["input"], fixture["input"][:2]]).cuda()  # batch 5
    with torch.no_grad():
        ref = model(x).float()
        with torch.autocast("cuda", dtype=dtype):
            low = model(x).float()
    assert torch.isfinite(low).all()
    rel = ((low - ref).abs().max() / ref.abs().max()).item()
    assert rel < (2e-2 if dtype == torch.bfloat16 else 5e-3), f"{name} {dtype}: relative error {rel:.2e}"


def test_training_step_gradients_match_cpu():
    """One forward + backward of LITv2 on the GPU gives the CPU's loss and gradients (deform_conv2d's CUDA backward
    included)."""
    model, fixture = _fixture_model(next(p for p in FIXTURE_FILES if p.stem == "litv2_cls_tiny"))
    model.train()
    for m in model.modules():  # stochastic depth draws from each device's own generator: off, so both run alike
        if hasattr(m, "drop_prob"):
            m.drop_prob = 0.0
    x, target = fixture["input"], torch.arange(fixture["input"].shape[0]) % 3

    def step(device):
        m = model.to(device)
        m.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(x.to(device)), target.to(device))
        loss.backward()
        return loss.item(), {k: p.grad.detach().cpu().clone() for k, p in m.named_parameters() if p.grad is not None}

    cpu_loss, cpu_grads = step("cpu")
    gpu_loss, gpu_grads = step("cuda")
    assert math.isfinite(gpu_loss) and abs(gpu_loss - cpu_loss) < 1e-4
    assert cpu_grads.keys() == gpu_grads.keys() and len(cpu_grads) > 10
    for k in cpu_grads:
        scale = cpu_grads[k].abs().max().item() + 1e-6
        diff = (gpu_grads[k] - cpu_grads[k]).abs().max().item()
        assert diff <= 1e-3 * scale + 1e-5, f"{k}: gradient max |diff| {diff:.2e} (scale {scale:.2e})"


def test_torchrun_one_gpu_nccl(tmp_path):
    """`torchrun --nproc_per_node 1 -m litvit.train --device cuda`: nccl, mixed precision, a checkpoint, >= 90%."""
    out = tmp_path / "run"
    args = ["--device", "cuda", "--amp", "auto", "--epochs", "3", "--workers", "2", "--no-progress"]
    args += ["--output", str(out)]
    result = torchrun("litvit.train", args, cwd=tmp_path, nproc=1, timeout=300, gpu=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 1
    assert summary["final_top1"] >= 90.0, summary  # percent
    assert (out / "last.pth").is_file()


@pytest.mark.parametrize("parts", [("ffn", "hilo", "dtm"), ("ffn",), ("hilo",), ("dtm",)], ids="+".join)
def test_official_forward_and_its_parts_equal_litvit_on_cuda(parts):
    """`litvit bench`'s official-code rows (and `:official=PART`) compute litvit's function on the GPU too, so their
    speed ratios there compare the same arithmetic."""
    model, fixture = _fixture_model(next(p for p in FIXTURE_FILES if p.stem == "litv2_cls_tiny"))
    model = model.cuda()
    x = fixture["input"].cuda()
    with torch.no_grad():
        diff = (official_style(model, parts)(x) - model(x)).abs().max().item()
    assert diff <= CUDA_VS_CPU, f"official {parts}: max |diff| {diff:.2e}"


def test_bench_profile_on_cuda_counts_each_kernel_once(tmp_path):
    """`litvit bench --profile` on a GPU: operators only (each kernel's time counted once, in the op that launched it),
    the DTM's cuDNN grid sampler in its category, the optimizer's step in its own."""
    out = tmp_path / "p"
    args = ["litv2_nano", "--profile", "--mode", "train", "--device", "cuda", "--img-size", "64", "--batch-size", "4"]
    assert bench_main([*args, "--warmup", "1", "--repeats", "2", "--quiet", "--out", str(out)]) == 0
    p = json.loads((out / "profile.json").read_text())["profiles"]["litv2_nano"]
    assert p["categories"]["deformable conv (DTM)"] > 0 and p["categories"][OPTIMIZER] > 0
    kernels = [op for op, _, _ in p["top_ops"] if op.startswith("void ") or "(" in op or "<" in op]
    assert not kernels, f"kernel events counted beside their ops: {kernels}"
