"""The ADE20K-style reader: label maps reduced as mmseg's reduce_zero_label, missing / mis-sized maps skipped or
refused, out-of-range classes found when read; the official train / test pipelines' shapes and padding."""

import numpy as np
import pytest
import torch
from PIL import Image

from litvit.data.ade import IGNORE_INDEX, SegmentationDataset, read_label, scan_ade
from litvit.data.folder import BadImage
from litvit.data.seg_transforms import SegEvalTransform, SegTrainTransform, rescale_size
from litvit.errors import DataError, DataNotFoundError


def make_ade(root, sizes=((20, 16), (24, 24)), split="training", labels=(0, 1, 2, 3), classes=None):
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / split / f"{i}.jpg")
        lab = rng.choice(np.array(labels, dtype=np.uint8), (h, w))
        Image.fromarray(lab).save(root / "annotations" / split / f"{i}.png")
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_reduce_zero_label(tmp_path):
    Image.fromarray(np.array([[0, 1, 2], [3, 0, 1]], np.uint8)).save(tmp_path / "l.png")
    assert read_label(str(tmp_path / "l.png"), 3).tolist() == [[255, 0, 1], [2, 255, 0]]
    with pytest.raises(ValueError, match="label value 3 is beyond the 2 classes"):
        read_label(str(tmp_path / "l.png"), 2)


def test_classes_from_file_or_count(tmp_path):
    root = make_ade(tmp_path / "a", classes=["sky", "tree", "road"])
    assert scan_ade(str(root), "training").classes == ["sky", "tree", "road"]
    with pytest.raises(DataError, match="names 3 classes"):
        scan_ade(str(root), "training", num_classes=5)
    plain = make_ade(tmp_path / "b")
    assert len(scan_ade(str(plain), "training").classes) == 150  # ADE20K's
    assert scan_ade(str(plain), "training", num_classes=4).classes == ["0", "1", "2", "3"]
    twice = make_ade(tmp_path / "c", classes=["sky", "tree", "road", "tree"])
    with pytest.raises(DataError, match=r"names 'tree' more than once \(lines 2, 4 "):
        scan_ade(str(twice), "training")


@pytest.mark.parametrize("kind", ["missing", "mis-sized"])
def test_bad_label_maps_skipped_or_refused(tmp_path, kind):
    root = make_ade(tmp_path)
    lab = root / "annotations" / "training" / "1.png"
    if kind == "missing":
        lab.unlink()
        reason = "no label map 1.png"
    else:
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(lab)
        reason = "label map is 7x5, the image 24x24"
    pairs = scan_ade(str(root), "training", "skip", num_classes=4)
    assert len(pairs.pairs) == 1 and reason in pairs.problems[0][1] and reason in pairs.notes("training")[0]
    with pytest.raises(DataError, match="--bad-annotations skip") as e:
        scan_ade(str(root), "training", "error", num_classes=4)
    assert reason in str(e.value)


def test_layout_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        scan_ade(str(tmp_path / "x"), "training")
    with pytest.raises(DataNotFoundError, match="ADE20K's layout"):
        scan_ade(str(tmp_path), "training")


def test_out_of_range_class_is_a_bad_image(tmp_path):
    root = make_ade(tmp_path, labels=(0, 1, 9))
    pairs = scan_ade(str(root), "training", num_classes=4)
    img, label = SegmentationDataset(pairs.pairs, 4)[0]
    assert isinstance(img, BadImage) and "beyond the 4 classes" in img.reason and label is None
    with pytest.raises(DataError, match="beyond the 4 classes"):
        SegmentationDataset(pairs.pairs, 4, bad_images="error")[0]


def test_train_pipeline_crops_and_pads(tmp_path):
    root = make_ade(tmp_path, sizes=((40, 20),))
    pairs = scan_ade(str(root), "training", num_classes=4)
    tf = SegTrainTransform(crop=32, scale=(64, 16), ratio_range=(1.0, 1.0), hflip=0.5)
    x, y = SegmentationDataset(pairs.pairs, 4, tf)[0]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.int64
    # rescaled to 32 x 16 (short side 16), so the bottom half of the crop is padding
    assert (y[16:] == IGNORE_INDEX).all() and (x[:, 16:] == 0).all() and (y[:16] != IGNORE_INDEX).any()


def test_eval_pipeline_keeps_labels_at_full_size(tmp_path):
    root = make_ade(tmp_path, sizes=((40, 20),))
    pairs = scan_ade(str(root), "training", num_classes=4)
    x, y = SegmentationDataset(pairs.pairs, 4, SegEvalTransform((64, 10)))[0]
    assert x.shape == (3, 10, 20) and y.shape == (20, 40)
    assert rescale_size(2000, 500, (2048, 512)) == (2048, 512) and rescale_size(500, 300, (2048, 512)) == (853, 512)
