"""Bad data gets a clear error at the boundary; unreadable images are skipped and named (or stop the run);
odd image modes are converted; sharding and augmentation seeds do not depend on the number of processes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from litvit.cli import main
from litvit.data import (
    BadImageError,
    DataError,
    DataNotFoundError,
    DigitsDataset,
    EpochSampler,
    ImageFileDataset,
    SeededDataset,
    collate,
    digits_split,
    load_rgb,
    scan_image_folder,
)

from .helpers import FAST, make_tree


def test_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        scan_image_folder(str(tmp_path / "nope"))
    (tmp_path / "a" / "train" / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "train" / "x" / "0.png")
    with pytest.raises(DataNotFoundError, match=r"val.* does not exist.*<class name>/<image>"):
        scan_image_folder(str(tmp_path / "a"))
    (tmp_path / "a" / "val").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        scan_image_folder(str(tmp_path / "a"))
    (tmp_path / "a" / "val" / "x").mkdir()
    (tmp_path / "a" / "val" / "x" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"1 class folder\(s\) in .*val' hold no images \(x\)"):
        scan_image_folder(str(tmp_path / "a"))
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "val" / "x" / "0.jpg")
    (tmp_path / "a" / "val" / "y").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "val" / "y" / "0.jpg")
    with pytest.raises(DataError, match=r"differ \(only in val/: y\)"):
        scan_image_folder(str(tmp_path / "a"))
    (tmp_path / "a" / "val" / "y" / "0.jpg").unlink()
    (tmp_path / "a" / "val" / "y").rmdir()
    tree = scan_image_folder(str(tmp_path / "a"))
    assert tree["classes"] == ["x"] and len(tree["train"]) == len(tree["val"]) == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--data", "{tmp}/missing"], "data folder '{tmp}/missing' does not exist"),
        (["--data", "{tmp}/empty"], "has no class folders"),
        (["--data", "{tmp}/mismatch"], "class folders of train/ and val/"),
    ],
)
def test_cli_reports_bad_folders_in_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir(parents=True)
    make_tree(tmp_path / "mismatch", classes=("a", "b"), per_class={"train": 1})
    make_tree(tmp_path / "mismatch", classes=("a", "c"), per_class={"val": 1})
    code = main(["train", *[a.format(tmp=tmp_path) for a in argv], "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("litvit train: ") and len(err.splitlines()) == 1
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "run").exists()


def test_image_modes_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    images = {
        "gray.png": Image.fromarray(rgb[..., 0], "L"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "alpha.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "palette_t.png": Image.fromarray(rgb).convert("P"),
        "gray16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 256),
    }
    for name, img in images.items():
        kwargs = {"transparency": 0} if name == "palette_t.png" else {}
        img.save(tmp_path / name, **kwargs)
    for name in images:
        out = load_rgb(str(tmp_path / name))
        assert out.mode == "RGB" and out.size == (10, 12), name
    gray = np.asarray(load_rgb(str(tmp_path / "gray.png")))
    assert (gray[..., 0] == rgb[..., 0]).all() and (gray[..., 1] == rgb[..., 0]).all()
    gray16 = np.asarray(load_rgb(str(tmp_path / "gray16.png")))
    assert (gray16[..., 0] == rgb[..., 0]).all()


def write_corrupt(tree):
    bad = [
        tree / "train" / "cat" / "broken.jpg",
        tree / "train" / "dog" / "truncated.png",
        tree / "val" / "emu" / "x.png",
    ]
    bad[0].write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    good = tree / "train" / "dog" / "0.png"
    bad[1].write_bytes(good.read_bytes()[:60])
    bad[2].write_bytes(b"")
    return bad


def test_unreadable_images_skipped_named_and_counted(tmp_path, capsys):
    tree = make_tree(tmp_path / "data")
    bad = write_corrupt(tree)
    # batch 2 uses all 26 train images every epoch (nothing left out by drop_last)
    code = main(
        ["train", "--data", str(tree), *FAST, "--epochs", "2", "--batch-size", "2", "--output", str(tmp_path / "run")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [ln for ln in captured.err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "skipped 3 unreadable image file(s)" in warnings[0]  # once, not every epoch
    for path in bad:
        assert str(path) in captured.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["bad_images"] == 3
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["bad_images"] == 3 and metrics["val_images"] == 3 * 3  # the unreadable val file is not counted


@pytest.mark.parametrize("workers", ["0", "1"])  # raised in the main process, or in a loader worker
def test_unreadable_image_error_mode(tmp_path, capsys, workers):
    tree = make_tree(tmp_path / "data")
    write_corrupt(tree)
    code = main(
        [
            "train",
            "--data",
            str(tree),
            *FAST,
            "--bad-images",
            "error",
            "--workers",
            workers,
            "--batch-size",
            "2",
            "--output",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("litvit train: cannot read image ")
    assert ("broken.jpg" in err[0] or "truncated.png" in err[0]) and "--bad-images skip" in err[0]


def test_error_mode_dataset_names_the_file(tmp_path):
    tree = make_tree(tmp_path / "data", per_class={"train": 2})
    (tree / "train" / "cat" / "0.png").write_bytes(b"junk")
    ds = ImageFileDataset([(str(tree / "train" / "cat" / "0.png"), 0)], ["cat"], bad_images="error")
    with pytest.raises(BadImageError, match="cannot read image .*0.png"):
        ds[0]


def test_training_substitutes_eval_drops(tmp_path):
    tree = make_tree(tmp_path / "data", classes=("a",), per_class={"train": 3})
    (tree / "train" / "a" / "1.png").write_bytes(b"junk")
    samples = [(str(tree / "train" / "a" / f"{i}.png"), 0) for i in range(3)]
    ds = ImageFileDataset(samples, ["a"], transform=lambda im: torch.zeros(1))
    img, _, bad = SeededDataset(ds, substitute=True)[(1, 7)]
    assert img is not None and [p for p, _ in bad] == [samples[1][0]]
    batch = collate([SeededDataset(ds)[(i, 0)] for i in range(3)])
    assert batch[0].shape[0] == 2 and len(batch[2]) == 1


def test_digits_split_is_fixed_and_stratified():
    train, val = digits_split()
    assert len(train) == 1437 and len(val) == 360 and not set(train) & set(val)
    ds = DigitsDataset("val", img_size=32)
    assert ds.images[0].size == (32, 32) and ds.images[0].mode == "RGB"
    counts = np.bincount(ds.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert np.array_equal(digits_split()[1], val)


def test_sharding_and_seeds_do_not_depend_on_world_size():
    data = list(range(50))
    single = EpochSampler(DistributedSampler(data, 1, 0, shuffle=True, seed=3, drop_last=True), seed=3)
    single.set_epoch(2)
    one = list(single)
    shards = []
    for rank in range(2):
        s = EpochSampler(
            DistributedSampler(data, 2, rank, shuffle=True, seed=3, drop_last=True), seed=3, num_replicas=2, rank=rank
        )
        s.set_epoch(2)
        shards.append(list(s))
    assert not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}
    interleaved = [item for pair in zip(*shards) for item in pair]
    assert interleaved == one  # same samples, same augmentation seeds, in the same global order
    single.set_epoch(2, skip=7)
    assert list(single) == one[7:]  # a resumed epoch continues exactly
    single.set_epoch(3)
    assert [i for i, _ in single] != [i for i, _ in one]
