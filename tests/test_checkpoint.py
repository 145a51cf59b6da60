"""Official checkpoints load into litvit models (issue: every released checkpoint loads), convert, and fail clearly."""

import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open

import litvit  # noqa: F401
from litvit.checkpoint import CheckpointError, read_checkpoint, unwrap_state_dict
from litvit.cli import main as cli
from litvit.convert import convert_checkpoint
from litvit.models import LITv2, create_backbone, identify
from litvit.variants import ALPHA_TAGS

FIXTURES = Path(__file__).parent / "data" / "official"


def fake_yacs_config() -> object:
    """An object pickled as `yacs.config.CfgNode`, as the official trainer saves its config (yacs not installed)."""
    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config.CfgNode = CfgNode
    sys.modules["yacs"], sys.modules["yacs.config"] = yacs, config
    cfg = CfgNode(MODEL=CfgNode(TYPE="litv2", NAME="litv2_small"), TRAIN=CfgNode(EPOCHS=300))
    return cfg


def save_official_training_checkpoint(sd: dict, path: Path) -> None:
    """The LITv2 / LIT trainer's layout: DDP-prefixed weights under 'model', plus optimizer, scheduler and config."""
    cfg = fake_yacs_config()
    try:
        torch.save(
            {
                "model": {"module." + k: v for k, v in sd.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
                "lr_scheduler": {"last_epoch": 299},
                "max_accuracy": 82.0,
                "epoch": 299,
                "config": cfg,
            },
            path,
        )
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]


@pytest.mark.parametrize(
    ("name", "layout"), [("litv2_s", "training"), ("lit_s", "model"), ("lit_ti", "bare"), ("litv2_b", "model")]
)
def test_full_size_official_file_reproduces_logits(tmp_path, name, layout):
    """timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...)) on an official-layout file."""
    reference = timm.create_model(name).eval()
    sd = reference.state_dict()
    path = tmp_path / f"{name}.pth"
    if layout == "training":
        save_official_training_checkpoint(sd, path)
    else:
        torch.save({"model": sd} if layout == "model" else sd, path)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("fixture", ["litv2_cls_tiny", "lit_smb_cls_tiny", "lit_ti_cls_tiny"])
def test_official_fixture_files_reproduce_official_logits(tmp_path, fixture):
    """Files in the official layout, written from the official code's state_dicts, give the official logits."""
    from tests.models.test_parity import build_from_fixture

    data = torch.load(FIXTURES / f"{fixture}.pt", weights_only=True)
    path = tmp_path / "official.pth"
    save_official_training_checkpoint(data["state_dict"], path)
    model = build_from_fixture(fixture, data["config"]).eval()
    model.load_pretrained(str(path))
    with torch.no_grad():
        torch.testing.assert_close(model(data["input"]), data["outputs"][0], atol=1e-5, rtol=0)


def test_no_foreign_code_runs_while_reading(tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("still here")

    class Evil:
        def __reduce__(self):
            return (os.remove, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "payload": Evil()}, path)
    ckpt = read_checkpoint(path)
    assert marker.exists()  # os.remove was never called
    assert torch.equal(ckpt["model"]["w"], torch.ones(2))
    assert (
        "Placeholder[posix.remove]" in type(ckpt["payload"]).__name__ or "Placeholder" in type(ckpt["payload"]).__name__
    )
    pickle.loads(pickle.dumps(Evil()))  # the same payload through plain pickle does run
    assert not marker.exists()


def test_fine_tune_to_own_classes_keeps_backbone(tmp_path):
    reference = timm.create_model("litv2_s")
    path = tmp_path / "litv2_s.pth"
    torch.save({"model": reference.state_dict()}, path)
    with pytest.warns(UserWarning, match=r"1000 classes and the model 37: .*freshly initialised \(fine-tuning\)"):
        model = timm.create_model(
            "litv2_s", pretrained=True, num_classes=37, pretrained_cfg_overlay=dict(file=str(path))
        )
    assert model.head.weight.shape == (37, 768)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if not k.startswith("head."))
    assert model.head.weight.std() < 0.05 and torch.count_nonzero(model.head.bias) == 0  # fresh trunc-normal head


def test_convert_round_trip(tmp_path, capsys):
    reference = timm.create_model("lit_s").eval()
    src = tmp_path / "lit_s.pth"
    save_official_training_checkpoint(reference.state_dict(), src)
    dst = tmp_path / "lit_s.safetensors"
    assert cli(["convert", str(src), str(dst)]) == 0
    assert "lit_s" in capsys.readouterr().out
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["litvit_model"] == "lit_s"
    model = timm.create_model("lit_s", pretrained=True, pretrained_cfg_overlay=dict(file=str(dst))).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert list(tmp_path.glob("*.tmp")) == []


def test_convert_alpha_checkpoint_is_recognised(tmp_path):
    reference = timm.create_model("litv2_s", alpha=0.5)
    src = tmp_path / "alpha_0.5.pth"
    torch.save({"model": reference.state_dict()}, src)
    name, kwargs = convert_checkpoint(src, tmp_path / "a.safetensors")
    assert (name, kwargs) == ("litv2_s", {"alpha": 0.5})


def test_convert_refuses_unknown_and_bad_files(tmp_path, capsys):
    src = tmp_path / "odd.pth"
    torch.save({"model": {"w": torch.ones(3)}}, src)
    assert cli(["convert", str(src), str(tmp_path / "o.safetensors")]) == 2
    assert "matches no released" in capsys.readouterr().err
    assert cli(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "o.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        convert_checkpoint(src, tmp_path / "o.pth")


def test_alpha_tags_build_their_alpha():
    assert set(ALPHA_TAGS) == {f"in1k_alpha{a}" for a in ("0", "0.2", "0.4", "0.5", "0.7", "0.9", "1")}
    expected_heads = {0.0: (0, 12), 0.2: (2, 10), 0.4: (4, 8), 0.5: (6, 6), 0.7: (8, 4), 0.9: (10, 2), 1.0: (12, 0)}
    for tag, alpha in ALPHA_TAGS.items():
        with torch.device("meta"):
            model = timm.create_model(f"litv2_s.{tag}")
        hilo = model.layers[2].blocks[0].attn
        assert (hilo.l_heads, hilo.h_heads) == expected_heads[alpha]
        assert model.pretrained_cfg["url"].endswith(
            f"/v1.1/alpha_{'0' if alpha == 0 else '1' if alpha == 1 else alpha}.pth"
        )
    with pytest.raises(ValueError, match=r"alpha=0\.5.*alpha=0\.9"):
        timm.create_model("litv2_s.in1k_alpha0.5", alpha=0.9)


@pytest.mark.parametrize(
    ("name", "url_end", "input_size", "crop"),
    [
        ("litv2_s.in1k", "v1.0/litv2_s.pth", (3, 224, 224), 0.875),
        ("litv2_m.in1k", "v1.0/litv2_m.pth", (3, 224, 224), 0.875),
        ("litv2_b.in1k", "v1.0/litv2_b.pth", (3, 224, 224), 0.875),
        ("litv2_b.in1k_384", "v1.0/litv2_b_384.pth", (3, 384, 384), 1.0),
        ("lit_ti.in1k", "v1.0/lit_ti.pth", (3, 224, 224), 0.875),
        ("lit_s.in1k", "v1.0/lit_s.pth", (3, 224, 224), 0.875),
        ("lit_m.in1k", "v1.0/lit_m.pth", (3, 224, 224), 0.875),
        ("lit_b.in1k", "v1.0/lit_b.pth", (3, 224, 224), 0.875),
    ],
)
def test_pretrained_configs(name, url_end, input_size, crop):
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg.url.endswith(url_end) and "ziplab" in cfg.url
    assert (cfg.input_size, cfg.crop_pct, cfg.interpolation) == (input_size, crop, "bicubic")
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    assert cfg.classifier == "head" and cfg.license == "apache-2.0" and cfg.paper_ids
    assert cfg.first_conv == ("patch_embed1.proj" if name.startswith("lit_ti") else "patch_embed.proj")
    if name == "litv2_b.in1k_384":
        with torch.device("meta"):
            assert timm.create_model(name).img_size == (384, 384)


def test_wrong_variant_and_alpha_are_named(tmp_path):
    path = tmp_path / "litv2_s.pth"
    torch.save({"model": timm.create_model("litv2_s", alpha=0.5).state_dict()}, path)
    with pytest.raises(
        CheckpointError, match=r"does not fit litv2_s \(alpha=0\.9\): different shapes.*l_q.*alpha=0\.5"
    ):
        timm.create_model("litv2_s", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(CheckpointError, match=r"does not fit litv2_m.*missing from the checkpoint \(240\)"):
        timm.create_model("litv2_m", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(CheckpointError, match=r"does not fit lit_s.*not in the model.*dwconv"):
        timm.create_model("lit_s", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_unreadable_files_are_named(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": timm.create_model("lit_ti").state_dict()}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint, or it is truncated or corrupt"):
        read_checkpoint(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt or not a checkpoint|not a PyTorch checkpoint"):
        read_checkpoint(text)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"not a safetensors file, or it is truncated or corrupt"):
        read_checkpoint(bad_st)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match=r"holds no state_dict"):
        unwrap_state_dict({"epoch": 3, "config": {"a": 1}})


def test_identify_knows_every_released_layout():
    for name, kwargs in [("litv2_b", {"alpha": 0.9}), ("litv2_s", {"alpha": 0.0}), ("lit_ti", {}), ("lit_m", {})]:
        with torch.device("meta"):
            sd = timm.create_model(name, **kwargs).state_dict()
        assert identify(sd) == (name, kwargs)


def test_lit_tables_and_lit_ti_embeddings_resize_for_another_resolution(tmp_path):
    lit = timm.create_model("lit_s").eval()
    path = tmp_path / "lit_s.pth"
    torch.save({"model": lit.state_dict()}, path)
    lit256 = timm.create_model("lit_s", img_size=256, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    table = lit256.layers[2].blocks[0].attn.relative_position_bias_table
    assert table.shape == (31 * 31, 12)
    # The resized table agrees with the original at the centre offset (0, 0) up to bicubic rounding.
    old = lit.layers[2].blocks[0].attn.relative_position_bias_table.detach().reshape(27, 27, 12)
    torch.testing.assert_close(table.detach().reshape(31, 31, 12)[15, 15], old[13, 13], atol=0.02, rtol=0)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():  # equals running the 224 model at 256 (it resizes the same way at run time)
        torch.testing.assert_close(lit256.eval()(x), lit(x), atol=2e-3, rtol=0)

    ti = timm.create_model("lit_ti").eval()
    path = tmp_path / "lit_ti.pth"
    torch.save(ti.state_dict(), path)
    ti256 = timm.create_model("lit_ti", img_size=256, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert ti256.pos_embed1.shape == (1, 64 * 64, 64) and ti256.pos_embed4.shape == (1, 65, 512)
    assert torch.equal(ti256.pos_embed4[:, 0], ti.pos_embed4[:, 0])
    with torch.no_grad():
        torch.testing.assert_close(ti256.eval()(x), ti(x), atol=1e-5, rtol=0)


def test_dense_backbones_load_imagenet_and_mmdet_files(tmp_path):
    cls = timm.create_model("litv2_s")
    imagenet = tmp_path / "litv2_s.pth"
    torch.save({"model": cls.state_dict()}, imagenet)
    det = create_backbone("litv2_s", task="det")
    norm1 = det.norm1.weight.detach().clone()
    det.load_pretrained(str(imagenet))
    assert torch.equal(det.layers[2].blocks[0].attn.l_q.weight, cls.layers[2].blocks[0].attn.l_q.weight)
    assert torch.equal(det.norm1.weight, norm1)  # not in an ImageNet file: keeps its init, as officially

    mmdet = tmp_path / "retinanet_litv2_s_fpn_1x_coco.pth"
    sd = {"backbone." + k: v for k, v in det.state_dict().items()}
    sd["neck.lateral_convs.0.conv.weight"] = torch.ones(1)
    torch.save({"meta": {"epoch": 12}, "state_dict": sd}, mmdet)
    det2 = create_backbone("litv2_s", task="det")
    det2.load_pretrained(str(mmdet))
    assert all(torch.equal(a, b) for a, b in zip(det2.state_dict().values(), det.state_dict().values()))

    lit = timm.create_model("lit_s")
    lit_file = tmp_path / "lit_s.pth"
    torch.save({"model": lit.state_dict()}, lit_file)
    lit_det = create_backbone("lit_s", task="det")
    lit_det.load_pretrained(str(lit_file))  # 27x27 / 13x13 tables resized to the 800-pixel reference (99 / 49)
    assert lit_det.layers[2].blocks[0].attn.relative_position_bias_table.shape == (99 * 99, 12)

    with pytest.raises(CheckpointError, match=r"does not fit.*different shapes"):
        create_backbone("litv2_b", task="seg").load_pretrained(str(imagenet))


def test_load_pretrained_accepts_a_model_class_directly(tmp_path):
    model = LITv2(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    other = LITv2(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    other.load_pretrained(str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_integer_weights_are_refused_and_half_precision_ones_load(tmp_path):
    """torch's load_state_dict casts whatever it is given: integer weights would load as wrong weights, silently."""
    model = LITv2(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["head.weight"] = (sd["head.weight"] * 100).to(torch.int64)
    path = tmp_path / "int.pth"
    torch.save(sd, path)
    other = LITv2(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    with pytest.raises(CheckpointError, match=r"not floating-point \(1\): head.weight torch.int64.*was saved") as exc:
        other.load_pretrained(str(path))
    assert "create that model" not in str(exc.value)  # only the dtype differs: no other-model hint
    half = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, half)
    other.load_pretrained(str(half))
    assert other.head.weight.dtype == torch.float32
    assert torch.equal(other.head.weight, model.head.weight.half().float())


def test_a_file_of_another_model_says_what_it_holds(tmp_path):
    """A litvit training checkpoint names its model; a file nothing identifies gets the general fix."""
    small = LITv2(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    other = LITv2(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=10)
    run_file, plain = tmp_path / "last.pth", tmp_path / "plain.pth"
    torch.save({"format": "litvit-train", "model_name": "litv2_nano", "model": small.state_dict()}, run_file)
    torch.save(small.state_dict(), plain)
    with pytest.raises(CheckpointError, match=r"different shapes.*The file says it holds litv2_nano\.$"):
        other.load_pretrained(str(run_file))
    with pytest.raises(CheckpointError, match=r"Create the model the file was saved from"):
        other.load_pretrained(str(plain))
