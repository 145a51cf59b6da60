"""`litvit eval`: the paper's eval transform, the same top-1 as a direct computation at any batch size, under
torchrun too, and clear errors."""

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision import transforms as T

from litvit import runtime as rt
from litvit.cli import main
from litvit.data.transforms import data_config, eval_transform

from ..train.helpers import make_tree, torchrun

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = [f"c{i}" for i in range(6)]


@pytest.fixture(scope="module")
def val_tree(tmp_path_factory):
    """An official-layout checkpoint of a 6-class litv2_nano, and a val tree whose labels make the expected top-1
    / top-5 known: computed image by image with torchvision's resize 36 bicubic + centre crop 32."""
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(1)
    model = timm.create_model("litv2_nano", num_classes=6).eval()
    with torch.no_grad():  # make the untrained network's predictions vary from image to image
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.05, 0.2)
        model.head.weight.mul_(50)
    ckpt = root / "litv2_nano_official.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 9}, ckpt)
    direct = T.Compose(
        [
            T.Resize(36, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(32),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    rng = np.random.default_rng(0)
    hits1 = hits5 = 0
    n = 23
    for i in range(n):
        h, w = int(rng.integers(33, 80)), int(rng.integers(33, 80))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if i % 5 == 0:
            img = img.convert("L")  # grayscale files are read as RGB
        with torch.no_grad():
            logits = model(direct(img.convert("RGB"))[None])[0]
        top5 = logits.topk(5).indices.tolist()
        if i < 6:  # every class gets an image
            label = i
        elif i % 3 == 0:  # a top-1 hit
            label = top5[0]
        elif i % 3 == 1:  # a top-5 hit only
            label = top5[int(rng.integers(1, 5))]
        else:  # a miss
            label = (set(range(6)) - set(top5)).pop()
        folder = root / "data" / "val" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i}.png")
        hits1 += top5[0] == label
        hits5 += label in top5
    return ckpt, root / "data", 100.0 * hits1 / n, 100.0 * hits5 / n, n


def run_eval(tmp_path, *argv):
    out = tmp_path / "res.json"
    assert main(["eval", *argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("ratio", [0.6, 1.8])
def test_bf16_eval_warns_where_bf16_gemms_are_slower(val_tree, tmp_path, capsys, monkeypatch, ratio):
    """`--amp bf16` on a CPU whose bf16 matrix products are slower than fp32 ones (emulated, or oneDNN without AMX)
    says so before it starts, with the fix; where they are faster it says nothing."""
    monkeypatch.setattr(rt, "bf16_matmul_speed", lambda *a, **k: ratio)
    ckpt, data, _, _, n = val_tree
    args = ["--model", "litv2_nano", "--checkpoint", str(ckpt), "--data", str(data), "--img-size", "32"]
    res = run_eval(tmp_path, *args, "--workers", "0", "--amp", "bf16")
    err = capsys.readouterr().err
    assert res["images"] == n
    warning = "warning: bf16 matrix products ran at 0.60x the speed of fp32 ones on this CPU"
    assert (warning in err and "use --amp fp32" in err) if ratio < 1 else "bf16 matrix products" not in err


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_eval_equals_direct_computation_at_any_batch_size(val_tree, tmp_path, batch_size):
    ckpt, data, top1, top5, n = val_tree
    assert 0 < top1 < 100 and top5 > top1
    res = run_eval(
        tmp_path,
        "--model",
        "litv2_nano",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(data),
        "--img-size",
        "32",
        "--crop-pct",
        "0.875",
        "--batch-size",
        str(batch_size),
        "--workers",
        "0",
    )
    assert res["images"] == n
    assert res["top1"] == pytest.approx(top1, abs=1e-9) and res["top5"] == pytest.approx(top5, abs=1e-9)


def test_eval_accepts_the_val_folder_itself_and_a_safetensors_copy(val_tree, tmp_path):
    ckpt, data, top1, _, _ = val_tree
    from safetensors.torch import save_file

    sd = {k.removeprefix("module."): v.contiguous() for k, v in torch.load(ckpt, weights_only=True)["model"].items()}
    st = tmp_path / "m.safetensors"
    save_file(sd, str(st))
    res = run_eval(
        tmp_path,
        "--model",
        "litv2_nano",
        "--checkpoint",
        str(st),
        "--data",
        str(data / "val"),
        "--img-size",
        "32",
        "--crop-pct",
        "0.875",
        "--workers",
        "0",
    )
    assert res["top1"] == pytest.approx(top1, abs=1e-9)


def test_eval_under_torchrun_equals_single_process(val_tree, tmp_path):
    ckpt, data, top1, top5, n = val_tree
    out = tmp_path / "ddp.json"
    result = torchrun(
        "litvit.eval",
        [
            "--model",
            "litv2_nano",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(data),
            "--img-size",
            "32",
            "--crop-pct",
            "0.875",
            "--batch-size",
            "3",
            "--workers",
            "0",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    res = json.loads(out.read_text())
    assert res["world_size"] == 2 and res["images"] == n  # 23 images over 2 ranks: none dropped or repeated
    assert res["top1"] == pytest.approx(top1, abs=1e-9) and res["top5"] == pytest.approx(top5, abs=1e-9)
    assert result.stdout.count("top-1") == 1


def test_paper_eval_transforms():
    with torch.device("meta"):
        s224 = timm.create_model("litv2_s")
        b384 = timm.create_model("litv2_b.in1k_384")
    t224 = eval_transform(data_config(s224)).transforms
    assert isinstance(t224[0], T.Resize) and t224[0].size == 256
    assert t224[0].interpolation == T.InterpolationMode.BICUBIC and t224[1].size == (224, 224)
    t384 = eval_transform(data_config(b384)).transforms
    assert isinstance(t384[0], T.Resize) and t384[0].size == (384, 384)  # resized without a crop
    assert t384[0].interpolation == T.InterpolationMode.BICUBIC


def test_eval_errors(val_tree, tmp_path, capsys):
    ckpt, data, *_ = val_tree
    three = make_tree(tmp_path / "three", per_class={"val": 1})
    cases = [
        (["--model", "litv2_nano", "--checkpoint", str(ckpt), "--data", str(three)], "has 3 class folders"),
        (["--model", "litv2_nano", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nope")], "does not exist"),
        (["--model", "litv2_nano", "--checkpoint", str(ckpt)], "pass --data"),
        (["--model", "litv2_nano", "--checkpoint", str(ckpt), "--data", str(data), "--ema"], "drop --ema"),
        (["--model", "litv2_nano", "--checkpoint", str(tmp_path / "none.pth"), "--data", str(data)], "does not exist"),
        (["--model", "lit_ti", "--checkpoint", str(ckpt), "--data", str(data)], "does not fit"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("litvit eval: ") and message in err[0], (argv, err)


def test_eval_under_torchrun_with_an_error_on_one_rank_ends_with_one_line_per_rank(val_tree, tmp_path):
    """The rank meeting the error waited in a barrier while the other waited for it in the metrics' all-reduce: the
    run hung until killed."""
    import shutil

    ckpt, data, *_ = val_tree
    shutil.copytree(data, tmp_path / "data")
    first = sorted((tmp_path / "data" / "val").rglob("*.png"))[0]
    first.write_bytes(b"not an image")
    args = ["--model", "litv2_nano", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--img-size", "32"]
    result = torchrun("litvit.eval", [*args, "--workers", "0", "--bad-images", "error"], cwd=tmp_path, timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and f"cannot read image {str(first)!r}" in text, text
    assert "another process of the run is gone (torch.distributed: " in text, text
    assert "[rank0]: Traceback" not in text and "[rank1]: Traceback" not in text, text
