"""Other libraries build on litvit's backbones through timm: segmentation_models_pytorch's `tu-` encoders and Hugging
Face transformers' TimmBackbone. Random weights at small sizes, nothing downloaded (HF_HUB_OFFLINE=1)."""

import pytest
import torch

import litvit  # noqa: F401  (registers litv2_s, lit_s, ... with timm before the clients ask timm for them)

NEEDS = "pip install 'litvit[clients]' (the dev extra includes it)"

CHANNELS = {"litv2_s": [96, 192, 384, 768], "lit_s": [96, 192, 384, 768]}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No download can happen: HF_HUB_OFFLINE=1 for what reads the environment now, and in huggingface_hub's
    constants, which read it once when first imported (timm may have imported it already)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _stage_sizes(h: int, w: int):
    """(H, W) of litvit's four stage maps: the patch embedding pads to a multiple of 4, each merge halves (floor)."""
    h, w = -(-h // 4), -(-w // 4)
    sizes = [(h, w)]
    for _ in range(3):
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


@pytest.mark.parametrize("arch, name", [("Unet", "litv2_s"), ("FPN", "litv2_s"), ("Unet", "lit_s"), ("FPN", "lit_s")])
def test_smp_models_on_a_non_square_input(arch, name):
    smp = pytest.importorskip("segmentation_models_pytorch", reason=NEEDS)
    torch.manual_seed(0)
    model = getattr(smp, arch)(encoder_name=f"tu-{name}", encoder_weights=None, classes=3).eval()
    # smp's layout for a transformer-style encoder: the input, an empty stride-2 slot, then the four stages
    assert list(model.encoder.out_channels) == [3, 0, *CHANNELS[name]]
    x = torch.randn(1, 3, 96, 160)  # smp needs multiples of 32; 3 x 5 at stride 32
    with torch.no_grad():
        feats = model.encoder(x)
        out = model(x)
    assert [f.shape[1] for f in feats[2:]] == CHANNELS[name]
    assert [tuple(f.shape[-2:]) for f in feats[2:]] == [(96 // s, 160 // s) for s in (4, 8, 16, 32)]
    assert out.shape == (1, 3, 96, 160) and torch.isfinite(out).all()
    if arch == "Unet" and name == "litv2_s":  # and it trains: gradients reach the first and last encoder weights
        model.train()(torch.randn(2, 3, 64, 96)).square().mean().backward()
        grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in (grads[0], grads[-1]))


@pytest.mark.parametrize("name", ["litv2_s", "lit_s"])
def test_transformers_timm_backbone_gives_four_maps_at_any_size(name):
    pytest.importorskip("transformers", reason=NEEDS)
    from transformers import TimmBackbone, TimmBackboneConfig

    torch.manual_seed(0)
    config = TimmBackboneConfig(backbone=name, use_pretrained_backbone=False, out_indices=(0, 1, 2, 3))
    backbone = TimmBackbone(config).eval()
    assert list(backbone.channels) == CHANNELS[name]
    x = torch.randn(1, 3, 250, 330)
    with torch.no_grad():
        maps = backbone(x).feature_maps
    assert len(maps) == 4 and [m.shape[1] for m in maps] == CHANNELS[name]
    assert [tuple(m.shape[-2:]) for m in maps] == _stage_sizes(250, 330)
    assert backbone._backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert all(torch.isfinite(m).all() for m in maps)
    if name == "litv2_s":  # with every stage in out_indices, the hidden states are those maps
        with torch.no_grad():
            out = backbone(x, output_hidden_states=True)
        assert all(torch.equal(a, b) for a, b in zip(out.hidden_states, maps)) and len(out.hidden_states) == 4
