"""litvit.predict.predict: the right digits from a trained run, stored and ImageNet class names, files that parse
back, unreadable files skipped and named."""

import csv
import json

import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo

from litvit.data.digits import DigitsDataset
from litvit.data.transforms import eval_transform
from litvit.errors import DataError
from litvit.eval.evaluate import load_eval_model, model_data_config
from litvit.predict import class_names, predict
from litvit.predict.output import CSV_COLUMNS, format_table
from litvit.train.checkpoint import FORMAT, VERSION


def _truth(path: str) -> str:
    return path.rsplit("_", 1)[1].removesuffix(".png")


def test_a_trained_run_names_the_right_digits_with_its_own_transform(digits_checkpoint, digit_pngs):
    records = predict([digit_pngs], checkpoint=str(digits_checkpoint), top_k=3, batch_size=7)
    assert [r["path"] for r in records] == sorted(str(p) for p in digit_pngs.glob("*.png"))
    right = sum(r["top_k"][0]["label"] == _truth(r["path"]) for r in records)
    assert right >= 16, f"{right} / 20 right"  # ~92% val top-1 after one epoch; chance is 10%
    for r in records:
        probs = [g["prob"] for g in r["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(g["label"] == str(g["index"]) for g in r["top_k"])  # the run's stored names: '0' .. '9'

    # the same probabilities as the model on the digits the run validated on, through eval's transform
    model, info = load_eval_model(None, str(digits_checkpoint))
    tf = eval_transform(model_data_config(model, info))
    ds = DigitsDataset("val", transform=tf)
    index = {int(p.name.split("_")[0]): str(p) for p in digit_pngs.glob("*.png")}
    with torch.no_grad():
        probs = model.eval()(torch.stack([ds[i][0] for i in sorted(index)])).softmax(-1)
    by_path = {r["path"]: r for r in records}
    for row, i in zip(probs, sorted(index)):
        top = by_path[index[i]]["top_k"][0]
        assert top["index"] == int(row.argmax()) and top["prob"] == pytest.approx(float(row.max()), abs=1e-5)

    one_by_one = predict(sorted(index.values()), checkpoint=str(digits_checkpoint), top_k=3, batch_size=1)
    for a, b in zip(records, one_by_one):
        assert [g["index"] for g in a["top_k"]] == [g["index"] for g in b["top_k"]]
        assert [g["prob"] for g in a["top_k"]] == pytest.approx([g["prob"] for g in b["top_k"]], abs=1e-5)


def test_a_converted_run_predicts_as_the_run_with_its_names(digits_checkpoint, digit_pngs, tmp_path):
    """`litvit convert` of a litvit run needs no --model, and the .safetensors file names its model, resolution and
    classes: predict from it gives the run's answers, under the run's class names."""
    from litvit.convert import convert_checkpoint

    path = tmp_path / "run.safetensors"
    name, kwargs = convert_checkpoint(digits_checkpoint, path)
    assert (name, kwargs) == ("litv2_nano", {"num_classes": 10, "img_size": 32})
    pngs = sorted(str(p) for p in digit_pngs.glob("*.png"))[:6]
    converted, run = (
        predict(pngs, checkpoint=str(path), top_k=2),
        predict(pngs, checkpoint=str(digits_checkpoint), top_k=2),
    )
    assert [r["top_k"] for r in converted] == [r["top_k"] for r in run]
    assert {g["label"] for r in converted for g in r["top_k"]} <= set("0123456789")


def test_stored_class_names_of_a_litvit_run(tmp_path, digit_pngs):
    classes = ["cat", "dog", "emu"]
    model = timm.create_model("litv2_nano", num_classes=3)
    path = tmp_path / "best.pth"
    run = {"format": FORMAT, "version": VERSION, "config": {"model": "litv2_nano"}, "classes": classes}
    torch.save({**run, "resolved": {"num_classes": 3}, "model": model.state_dict()}, path)
    records = predict(digit_pngs, checkpoint=str(path), top_k=10)
    assert all(sorted(g["label"] for g in r["top_k"]) == classes for r in records)  # top-10 of 3 classes: all 3
    assert all(sum(g["prob"] for g in r["top_k"]) == pytest.approx(1.0, abs=1e-5) for r in records)


def test_imagenet_names_for_random_weights_at_another_size(digit_pngs):
    info = ImageNetInfo()
    imagenet = {info.index_to_description(i) for i in range(1000)}
    torch.manual_seed(0)
    records = predict(
        sorted(digit_pngs.glob("*.png"))[:2], model="litv2_s", pretrained=False, img_size=64, top_k=5, batch_size=2
    )
    assert len(records) == 2
    for r in records:
        probs = [g["prob"] for g in r["top_k"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(g["label"] in imagenet for g in r["top_k"])
        assert all(g["label"] == info.index_to_description(g["index"]) for g in r["top_k"])


def test_class_names_fall_back_to_numbers():
    model = timm.create_model("litv2_nano", num_classes=4)
    assert class_names(model) == [f"class {i}" for i in range(4)]
    assert class_names(model, {"classes": ["a", "b"]}) == [f"class {i}" for i in range(4)]  # wrong count: ignored


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_outputs_parse_back(digits_checkpoint, digit_pngs, tmp_path, suffix):
    out = tmp_path / "sub" / f"preds{suffix}"
    records = predict(digit_pngs, checkpoint=str(digits_checkpoint), top_k=2, output=str(out))
    text = out.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        assert [json.loads(line) for line in text.splitlines()] == records
    else:
        rows = list(csv.DictReader(text.splitlines()))
        assert tuple(rows[0].keys()) == CSV_COLUMNS and len(rows) == 2 * len(records)
        back = [(row["path"], int(row["rank"]), row["label"], int(row["index"]), float(row["prob"])) for row in rows]
        expected = [
            (r["path"], rank, g["label"], g["index"], g["prob"])
            for r in records
            for rank, g in enumerate(r["top_k"], 1)
        ]
        assert back == expected
    assert not list(out.parent.glob(".*.tmp"))  # the atomic writer left no temporary file


def test_unreadable_files_are_skipped_and_named(digits_checkpoint, digit_pngs, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(digit_pngs.glob("*.png"))[:3]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "corrupt.png").write_bytes(good[0].read_bytes()[:60])  # a truncated PNG
    (folder / "text.jpg").write_text("not a picture")
    (folder / "README.txt").write_text("no image ending: not taken from a folder")
    notes = tmp_path / "notes.txt"
    notes.write_text("named on its own: tried, then skipped")
    skipped = []
    records = predict(
        [folder, notes], checkpoint=str(digits_checkpoint), batch_size=2, on_skip=lambda p, why: skipped.append(p)
    )
    assert [r["path"] for r in records] == [str(folder / p.name) for p in good]
    assert sorted(skipped) == sorted([str(folder / "corrupt.png"), str(folder / "text.jpg"), str(notes)])
    with pytest.raises(DataError, match="none of the 2 file"):
        predict([folder / "corrupt.png", notes], checkpoint=str(digits_checkpoint), on_skip=lambda p, why: None)


def test_grayscale_and_alpha_images_are_read_as_rgb(digits_checkpoint, digit_pngs, tmp_path):
    src = sorted(digit_pngs.glob("*.png"))[0]
    Image.open(src).convert("L").save(tmp_path / "gray.png")
    Image.open(src).convert("RGBA").save(tmp_path / "alpha.png")
    records = predict([src, tmp_path / "gray.png", tmp_path / "alpha.png"], checkpoint=str(digits_checkpoint))
    assert len({r["top_k"][0]["label"] for r in records}) == 1
    assert records[0]["top_k"][0]["prob"] == pytest.approx(records[2]["top_k"][0]["prob"], abs=1e-6)


def test_table_shows_each_image_once_with_percentages():
    records = [
        {
            "path": "a.png",
            "top_k": [{"label": "cat", "index": 0, "prob": 0.75}, {"label": "dog", "index": 1, "prob": 0.2}],
        },
        {"path": "x" * 80 + ".png", "top_k": [{"label": "emu", "index": 2, "prob": 1.0}]},
    ]
    lines = format_table(records).splitlines()
    assert lines[0].split() == ["image", "prob", "class"] and len(lines) == 4
    assert lines[1].startswith("a.png") and lines[1].split()[1:] == ["75.0%", "cat"]
    assert lines[2].split() == ["20.0%", "dog"]
    assert lines[3].startswith("...") and lines[3].split()[1:] == ["100.0%", "emu"]
