"""The official-code rows of `litvit bench` (`litv2_s:official`): the official forward over litvit's own weights."""

import json

import pytest
import torch
import torch.nn.functional as F

from litvit.bench.models import check_models, create_model, is_ours, label
from litvit.bench.official_style import official_parts, official_style
from litvit.errors import BenchError
from litvit.models.litv2 import litv2_nano


def _nano() -> torch.nn.Module:
    """litv2_nano with non-trivial DTM offsets and BatchNorm statistics, so every layer's layout matters."""
    torch.manual_seed(0)
    model = litv2_nano()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
        if hasattr(module, "conv_offset"):
            torch.nn.init.normal_(module.conv_offset.weight, std=0.1)
    return model.eval()


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_official_forward_equals_litvit(size):
    model = _nano()
    official = official_style(model)
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(official(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("parts", [("ffn",), ("hilo",), ("dtm",), ("dtm", "ffn")])
def test_official_parts_alone_compute_the_same_function(parts):
    """`litv2_s:official=PART`: only those parts the official way, the others litvit's; the same logits."""
    model = _nano()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(official_style(model, parts)(x), model(x), atol=1e-5, rtol=0)


def test_official_part_names():
    assert official_parts("litv2_s:official") == ("ffn", "hilo", "dtm")
    assert official_parts("litv2_s:official=dtm,hilo") == ("dtm", "hilo")
    assert official_parts("litv2_s") == ()
    assert label("litv2_s:official=dtm") == "LITv2-S (official dtm)" and not is_ours("litv2_s:official=dtm")
    for bad in ("litv2_s:official=attn", "litv2_s:official=", "litv2_s:officialdtm"):
        with pytest.raises(BenchError, match="NAME:official=PART"):
            check_models([bad])


def test_same_parameters_counted_once_and_trained_together():
    model = _nano().train()
    official = official_style(model)
    assert official.training
    assert sum(p.numel() for p in official.parameters()) == sum(p.numel() for p in model.parameters())
    loss = F.cross_entropy(official(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1]))
    loss.backward()
    hilo = next(m for m in model.modules() if type(m).__name__ == "HiLo")
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hilo.parameters())
    assert model.layers[0].blocks[0].mlp.dwconv.dwconv.weight.grad is not None


def test_only_litv2_classifiers_have_official_rows():
    with pytest.raises(TypeError, match="LITv2 classifiers only"):
        official_style(torch.nn.Linear(2, 2))
    with pytest.raises(BenchError, match="LITv2 classifiers only"):
        check_models(["swin_tiny_patch4_window7_224:official"])
    with pytest.raises(BenchError, match="unknown model 'litv2_q'"):
        check_models(["litv2_q:official"])
    check_models(["litv2_s", "litv2_s:official"])  # both rows in one run


def test_bench_builds_and_names_the_official_rows():
    model = create_model("litv2_nano:official", 64)
    assert type(model).__name__ == "OfficialStyleLITv2"
    assert label("litv2_s:official") == f"{label('litv2_s')} (official code)"
    assert not is_ours("litv2_s:official") and is_ours("litv2_s")


def test_official_rows_run_under_bf16_autocast():
    """torchvision's CPU deformable conv has no bf16 kernel: the official AMP code runs it in fp32, and so do we."""
    model = _nano()
    official = official_style(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = official(x).float()
    with torch.no_grad():
        ref = model(x)
    assert (low - ref).abs().max() <= 0.05 * ref.abs().max()


def test_bench_reports_litv2_against_its_official_row(tmp_path):
    from litvit.bench.cli import main

    out = tmp_path / "official"
    args = ["--quick", "litv2_nano", "litv2_nano:official", "--img-size", "64", "--batch-size", "2", "--threads", "1"]
    assert main([*args, "--no-memory", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in record["results"]}
    ratio = rows["litv2_nano"]["vs_official"]["throughput"]
    assert ratio["median"] > 0 and len(ratio["per_round"]) == 1
    assert "latency" in rows["litv2_nano"]["vs_official"]
    assert "vs_official" not in rows["litv2_nano:official"]
    assert rows["litv2_nano:official"]["label"].endswith("(official code)") and not rows["litv2_nano:official"]["ours"]
    table = (out / "table.md").read_text()
    assert "img/s vs official code" in table and "latency vs official code" in table


def test_official_hilo_shares_parameters_in_plain_linears():
    """The official rows must not borrow litvit's fast paths: HiLo's projections are plain nn.Linear there."""
    model = _nano()
    official = official_style(model)
    hilo = next(m for m in model.modules() if type(m).__name__ == "HiLo")
    ref = next(iter(official.hilo.values()))
    for name, child in hilo.named_children():
        plain = getattr(ref, name, None)
        if isinstance(plain, torch.nn.Linear):
            assert type(plain) is torch.nn.Linear and plain.weight is child.weight and plain.bias is child.bias
