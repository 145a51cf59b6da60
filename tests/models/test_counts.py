"""Parameter counts, buffer sizes and FLOPs equal the official code's (spec/ARCHITECTURE.md section 6)."""

import math

import pytest
import timm
import torch

import litvit  # noqa: F401
from litvit.flops import count_macs, official_flops
from litvit.models import create_backbone

PARAMS = {
    "litv2_s": 27_844_000,
    "litv2_m": 48_830_368,
    "litv2_b": 86_520_704,
    "lit_s": 27_973_720,
    "lit_m": 49_372_264,
    "lit_b": 87_292_384,
    "lit_ti": 19_886_272,
}
BUFFERS = {
    "litv2_s": 2_691,
    "litv2_m": 2_691,
    "litv2_b": 3_587,
    "lit_s": 237_989,
    "lit_m": 698_981,
    "lit_b": 699_877,
    "lit_ti": 1_923,
}
OFFICIAL_FLOPS = {
    ("litv2_s", 224): 3_734_401_596,
    ("litv2_m", 224): 7_479_237_180,
    ("litv2_b", 224): 13_193_561_148,
    ("litv2_b", 384): 39_709_486_528,
    ("lit_s", 224): 4_081_669_692,
    ("lit_m", 224): 8_599_316_028,
    ("lit_b", 224): 15_036_676_156,
}
DENSE_PARAMS = {
    ("litv2_s", "det"): 27_076_152,
    ("litv2_m", "det"): 48_062_520,
    ("litv2_b", "det"): 85_497_240,
    ("litv2_s", "seg"): 27_076_344,
    ("litv2_m", "seg"): 48_062_712,
    ("litv2_b", "seg"): 85_497_496,
    ("lit_s", "det"): 27_966_192,
    ("lit_s", "seg"): 27_477_360,
    ("lit_ti", "det"): 19_371_736,
    ("lit_ti", "seg"): 19_371_736,
}


def meta_model(name: str, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_and_buffer_counts(name):
    model = meta_model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PARAMS[name]
    assert sum(b.numel() for _, b in model.named_buffers()) == BUFFERS[name]


@pytest.mark.parametrize(("name", "task"), list(DENSE_PARAMS))
def test_dense_backbone_parameter_counts(name, task):
    with torch.device("meta"):
        model = create_backbone(name, task=task)
    assert sum(p.numel() for p in model.parameters()) == DENSE_PARAMS[(name, task)]


@pytest.mark.parametrize(("name", "size"), list(OFFICIAL_FLOPS))
def test_official_flops_exact(name, size):
    model = meta_model(name, img_size=size)
    assert official_flops(model) == OFFICIAL_FLOPS[(name, size)]
    assert model.flops() == OFFICIAL_FLOPS[(name, size)]


@pytest.mark.parametrize(
    ("alpha", "gflops"), [(0.0, 3.965), (0.2, 3.881), (0.4, 3.815), (0.5, 3.769), (0.7, 3.742), (1.0, 3.746)]
)
def test_alpha_ablation_flops(alpha, gflops):
    assert round(official_flops(meta_model("litv2_s", alpha=alpha)) / 1e9, 3) == gflops


def test_official_flops_refuses_lit_ti():
    with pytest.raises(TypeError, match="count_macs"):
        official_flops(meta_model("lit_ti"))


@pytest.mark.parametrize(("name", "gmacs"), [("lit_ti", 3.614), ("lit_s", 4.077), ("litv2_s", 3.724)])
def test_measured_macs_match_official_flop_counter(name, gmacs):
    """FlopCounterMode totals, with our deform_conv2d formula, match the official code measured the same way."""
    assert round(count_macs(timm.create_model(name)) / 1e9, 3) == gmacs


def test_deform_conv_is_counted():
    """Without the registered formula FlopCounterMode would count DTM's deformable conv as zero."""
    from litvit.layers import DeformableTokenMerging

    dtm = DeformableTokenMerging(8, 16)

    class Wrap(torch.nn.Module):
        def forward(self, x):
            return dtm(x.permute(0, 2, 3, 1))

    macs = count_macs(Wrap(), input_size=(6, 10), in_chans=8)
    offset_conv = 8 * 4 * 8 * 3 * 5
    deform = 16 * 4 * 8 * 3 * 5
    assert macs >= offset_conv + deform


# ------------------------------------------------------------------------------- official count, layer by layer


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "macs"),
    [  # numbers of the former isinstance-ladder implementation, which the per-layer flops() sum must keep
        ("litv2_s", {}, (224, 320), 5_361_625_320),
        ("litv2_m", {}, (200, 301), 8_820_704_064),
        ("litv2_b", {}, (384, 512), 53_577_932_032),
        ("lit_s", {}, (224, 288), 5_315_379_204),
        ("lit_b", {}, (193, 257), 14_745_840_896),
        ("lit_m", {}, 256, 11_446_810_368),
    ],
)
def test_official_flops_rectangular_and_odd_sizes(name, kwargs, size, macs):
    assert official_flops(meta_model(name, **kwargs), size) == macs


def _spec_official_flops(model, r: int) -> int:
    """ARCHITECTURE.md section 6, "The official flops() formula", for a square image of side r (an oracle written
    from the spec, independent of the layers' flops() methods)."""

    def conv(k, cin, cout, stride, pad, side, groups=1):
        od = (side + 2 * pad - (k - 1) - 1) // stride + 1
        return k * k * cin * (cout // groups) * od * od + cout * od * od

    e = model.embed_dims[0]
    side = r // 4
    total = side * side * e * 3 * 16 + side * side * e
    for i, stage in enumerate(model.layers):
        c = model.embed_dims[i]
        for block in stage.blocks:
            hidden = block.mlp.fc1.out_features
            total += 2 * side * side * c * hidden + c * side * side
            if hasattr(block.mlp, "dwconv"):
                total += conv(3, hidden, hidden, 1, 1, side, groups=hidden)
            if hasattr(block, "attn"):
                n, heads = side * side, block.attn.num_heads
                if hasattr(block.attn, "window_size"):  # HiLo, spec section 3
                    s = block.attn.window_size
                    l_dim = (heads if s == 1 else int(heads * block.attn.alpha)) * (c // heads)
                    h_dim = c - l_dim
                    hp = s * math.ceil(side / s)
                    np_, kv = hp * hp, (hp // s) ** 2
                    attn = np_ * c * h_dim * 3 + (np_ // s // s) * (s * s) ** 2 * h_dim * 2 + np_ * h_dim * h_dim
                    attn += np_ * c * l_dim + kv * c * l_dim * 2 + np_ * l_dim * kv * 2 + np_ * l_dim * l_dim
                else:  # relative-position MSA
                    attn = n * c * 3 * c + 2 * heads * n * (c // heads) * n + n * c * c
                total += c * side * side + attn
        if i < len(model.layers) - 1:
            total += conv(2, c, 12, 2, 0, side) + conv(2, c, 2 * c, 2, 0, side) + (side // 2) ** 2 * 2 * c
            side //= 2
    return total + model.num_features * (r // 4) ** 2 // 16 + model.num_features * model.num_classes


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("litv2_s", {}),
        ("lit_s", {}),
        ("lit_m", dict(num_classes=10)),
        ("litv2_s", dict(depths=(1, 1, 2, 1), alpha=0.25)),
        ("lit_s", dict(depths=(1, 2, 1, 1), mlp_ratio=3.0)),
    ],
)
@pytest.mark.parametrize("r", [224, 256])
def test_official_flops_match_the_spec_formula(name, kwargs, r):
    model = meta_model(name, **kwargs)
    assert official_flops(model, r) == _spec_official_flops(model, r)


def test_official_flops_refuses_backbones():
    with torch.device("meta"):
        backbone = create_backbone("litv2_s")
    with pytest.raises(TypeError, match="count_macs"):
        official_flops(backbone, 224)


def test_flops_module_imports_no_models():
    """flops.py is imported by the models; importing them back would be a cycle (it duck-types instead)."""
    import ast
    import inspect

    import litvit.flops

    tree = ast.parse(inspect.getsource(litvit.flops))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "models" in m], imported


# ------------------------------------------------------------------------------------- measured SDPA counts


def _sdpa_counts(fn) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


B, HEADS, N, M, D, DV = 2, 3, 5, 7, 4, 4
SDPA_FWD = 4 * B * HEADS * N * M * D  # q k^T and attn v: 2 * (B h N M d) MACs each
SDPA_BWD = 2 * B * HEADS * N * M * (3 * D + 2 * DV)  # torch's sdpa_backward_flop_count convention


def _qkv(requires_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, HEADS, N, D, generator=g, requires_grad=requires_grad)
    return q, torch.randn(B, HEADS, M, D, generator=g), torch.randn(B, HEADS, M, DV, generator=g)


@pytest.mark.parametrize("mask", [False, True])
def test_one_sdpa_call_is_counted_exactly(mask):
    """torch 2.14's flop counter has no formula for the CPU flash kernel (it counted 0); litvit registers one."""
    q, k, v = _qkv()
    bias = torch.randn(1, HEADS, N, M) if mask else None
    with torch.no_grad():
        counts = _sdpa_counts(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    assert sum(counts.values()) == SDPA_FWD, counts


def test_sdpa_counted_the_same_on_every_path():
    """Inference tensors reach the counter as one composite op, the math backend as bmm's: same number."""
    q, k, v = _qkv()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    with torch.inference_mode():
        assert sum(_sdpa_counts(lambda: sdpa(q, k, v)).values()) == SDPA_FWD
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        assert sum(_sdpa_counts(lambda: sdpa(q, k, v)).values()) == SDPA_FWD
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        assert sum(_sdpa_counts(lambda: sdpa(q, k, v)).values()) == SDPA_FWD


def test_sdpa_backward_is_counted():
    q, k, v = _qkv(requires_grad=True)
    counts = _sdpa_counts(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward())
    assert sum(counts.values()) == SDPA_FWD + SDPA_BWD, counts


def test_formula_registration_is_idempotent_and_overrides_existing_ones():
    """A formula already there (torch's own in a newer release, or litvit's from an earlier import) is replaced,
    not refused with torch's "duplicate registrations" error."""
    from torch.utils import flop_counter

    from litvit.flops import register_formulas

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    try:
        flop_counter.flop_registry[op] = flop_counter.shape_wrapper(lambda *args, **kwargs: 1)  # a foreign formula
        register_formulas()
        register_formulas()
    finally:
        register_formulas()
    q, k, v = _qkv()
    with torch.no_grad():
        assert sum(_sdpa_counts(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)).values()) == (
            SDPA_FWD
        )
    # every SDPA kernel op of the running torch has litvit's formula (same convention as torch's sdpa_flop)
    aten = torch.ops.aten
    shapes = (torch.Size([B, HEADS, N, D]), torch.Size([B, HEADS, M, D]), torch.Size([B, HEADS, M, DV]))
    for name in ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention"):
        if hasattr(aten, name):
            assert flop_counter.flop_registry[getattr(aten, name)](*shapes, out_val=None) == SDPA_FWD
