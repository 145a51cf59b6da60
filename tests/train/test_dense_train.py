"""`litvit train --task det | seg` runs the one training loop end to end on tiny scenes, and `litvit eval` reads its
checkpoint and finds the same score; bad input is one line and exit status 2."""

import json

import pytest
import torch

from litvit.cli import main
from litvit.data.scenes import write_scenes

NANO = ["backbone_kwargs={embed_dim: 16, depths: [1, 1, 1, 1], num_heads: [1, 1, 2, 2]}", "fpn_channels=32"]
TINY = ["--threads", "1", "--workers", "0", "--no-progress", "--img-size", "64", "--epochs", "1", "--batch-size", "2"]
TINY += ["--warmup-steps", "1", "--model-kwargs", *NANO]
RCNN = ["--model-kwargs", *NANO, "box_fc_channels=64", "mask_channels=32"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), size=64, counts=(4, 3))


def _last_metrics(run):
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize(
    "task, model, data, score, flags",
    [
        ("det", "retinanet_litv2_s", "coco", "bbox_mAP", ["--max-size", "64"]),
        pytest.param(
            *("det", "mask_rcnn_litv2_s", "coco", "segm_mAP", ["--max-size", "64", *RCNN]),
            marks=pytest.mark.needs("pycocotools"),
        ),
        ("seg", "semantic_fpn_litv2_s", "ade", "mIoU", ["--max-size", "128"]),
    ],
)
def test_train_then_eval_reads_the_checkpoint(tmp_path, capsys, scenes, task, model, data, score, flags):
    run = tmp_path / "run"
    args = ["--task", task, "--model", model, "--data", str(scenes / data), *TINY, *flags, "--output", str(run)]
    assert main(["train", *args]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert (run / "last.pth").is_file() and (run / "best.pth").is_file()
    metrics = _last_metrics(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == ("detection" if task == "det" else "segmentation") and summary["steps"] == 2
    assert summary["final_top1"] == pytest.approx(metrics[f"val_{'mIoU' if task == 'seg' else 'bbox_mAP'}"], abs=1e-5)
    label = {"bbox_mAP": "bbox mAP", "segm_mAP": "mask mAP", "mIoU": "mIoU"}[score]
    assert main(["eval", "--checkpoint", str(run / "last.pth"), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert f"{label} {metrics['val_' + score]:.1f}" in out and "(3 images)" in out
    assert json.loads((tmp_path / "e.json").read_text())[score] == pytest.approx(metrics[f"val_{score}"], abs=1e-5)
    if model == "retinanet_litv2_s":  # the same weights as a plain file (a release or a convert output) + --model
        torch.save(torch.load(run / "last.pth", weights_only=True)["model"], tmp_path / "plain.pth")
        argv = ["eval", "--task", task, "--model", model, "--checkpoint", str(tmp_path / "plain.pth")]
        argv += ["--data", str(scenes / data), "--img-size", "64", *flags, "--model-kwargs", *NANO]
        assert main(argv) == 0, capsys.readouterr().err
        assert f"{label} {metrics['val_' + score]:.1f}" in capsys.readouterr().out
        damaged = torch.load(run / "last.pth", weights_only=True)  # a hand-edited run checkpoint: one line
        damaged["model"].pop(next(iter(damaged["model"])))
        torch.save(damaged, tmp_path / "damaged.pth")
        _one_line_exit_2(
            capsys, ["eval", "--checkpoint", str(tmp_path / "damaged.pth")], "missing from the checkpoint (1)"
        )


def test_default_configs_are_the_dense_ones(tmp_path):
    """`--task det` without --config starts from scenes_det (a nano RetinaNet at 128 px), `--task seg` from
    scenes_seg; the paper recipes load and validate."""
    from litvit.train.config import build_config

    det = build_config(overrides={"task": "det"})
    assert (det.model, det.img_size, det.task) == ("retinanet_litv2_s", 128, "det")
    seg = build_config(overrides={"task": "seg"})
    assert seg.model == "semantic_fpn_litv2_s" and seg.class_weight == [0.1] + [1] * 10  # background, 10 digits
    assert seg.model_kwargs["aux_weight"] == 0.4  # mmseg's auxiliary head and weight
    retina = build_config("retinanet_litv2_s")
    assert (retina.sched, retina.decay_milestones, retina.warmup_steps, retina.epochs) == (
        "multistep",
        [8, 11],
        500,
        12,
    )
    assert (retina.base_lr, retina.lr_base_size, retina.weight_decay_groups) == (1e-4, 16, "all")
    mask = build_config("mask_rcnn_litv2_s")
    assert (mask.base_lr, mask.weight_decay_groups) == (2e-4, "no_norm")
    fpn = build_config("semantic_fpn_litv2_s")
    assert (fpn.sched, fpn.decay_rate, fpn.img_size, fpn.max_size, fpn.amp) == ("poly", 0.9, 512, 2048, "fp32")
    assert fpn.class_weight == []  # the ADE20K recipe weighs every class alike
    assert "aux_weight" not in fpn.model_kwargs  # ... and has no auxiliary head


def _one_line_exit_2(capsys, argv, *needles):
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"litvit {argv[0]}: "), lines  # no traceback
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "--task", "det", "--data", "{tmp}/no"], ["does not exist"]),
        (["train", "--task", "det", "--data", "{scenes}/ade"], ["COCO's layout"]),
        (["train", "--task", "seg", "--data", "{scenes}/coco"], ["ADE20K's layout"]),
        (["train", "--task", "det", "--data", "{scenes}/coco", "--model", "retinanet_litv9"], ["unknown dense model"]),
        (
            ["train", "--task", "det", "--data", "{scenes}/coco", "--num-classes", "3"],
            ["--num-classes 3", "10 categories"],
        ),
        (["train", "--task", "seg", "--data", "{scenes}/ade", "--class-weight", "1", "2"], ["2 values for 11 classes"]),
        (["train", "--task", "seg", "--data", "{scenes}/ade", "--class-weight", "-1"], ["class_weight must be"]),
        (["train", "--task", "det", "--data", "{scenes}/coco", "--class-weight", "1"], ["--task seg only"]),
        (["eval", "--task", "det"], ["needs --checkpoint"]),
        (["eval", "--task", "seg", "--checkpoint", "{tmp}/w.pth"], ["w.pth"]),
        (["eval", "--task", "det", "--checkpoint", "{tmp}/w.pth"], ["w.pth"]),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, scenes, argv, needles):
    (tmp_path / "w.pth").write_bytes(b"not a checkpoint")
    argv = [a.format(tmp=tmp_path, scenes=scenes) for a in argv]
    _one_line_exit_2(capsys, [*argv, *(["--output", str(tmp_path / "r")] if argv[0] == "train" else [])], *needles)
    assert not (tmp_path / "r").exists()


def test_eval_refuses_a_checkpoint_of_another_task(tmp_path, capsys, scenes):
    run = tmp_path / "run"
    args = ["--task", "seg", "--data", str(scenes / "ade"), *TINY, "--max-size", "128", "--output", str(run)]
    assert main(["train", *args]) == 0
    capsys.readouterr()
    argv = ["eval", "--task", "det", "--checkpoint", str(run / "last.pth")]
    _one_line_exit_2(capsys, argv, "holds a segmentation model, not a detection one")


def test_class_weight_scales_each_pixels_cross_entropy():
    from litvit.tasks.segmentation import seg_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    labels[0, 0, :2] = 255  # ignored: 0 whatever the weights
    w = torch.tensor([0.1, 1.0, 2.0])
    per_pixel = torch.nn.functional.cross_entropy(logits, labels.clamp(max=2), reduction="none")
    per_pixel[labels == 255] = 0
    expected = (per_pixel * w[labels.clamp(max=2)]).mean()  # mmseg: weighted, then the mean over all pixels
    assert torch.allclose(seg_loss(logits, labels, w), expected)
    assert torch.allclose(seg_loss(logits, labels), per_pixel.mean())


def test_auxiliary_head_adds_its_weighted_cross_entropy():
    """With aux_weight w the training loss is CE(logits) + w * CE(auxiliary logits, upsampled), both class-weighted."""
    from litvit.dense import create_dense_model
    from litvit.tasks.segmentation import SegmentationTask, seg_loss

    torch.manual_seed(0)
    tiny = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "drop_path_rate": 0.0}
    model = create_dense_model(
        "semantic_fpn_litv2_s", 3, backbone_kwargs=tiny, fpn_channels=16, channels=8, dropout=0.0, aux_weight=0.4
    ).train()  # no dropout or drop path: two forwards give the same logits
    task = SegmentationTask()
    task.class_weight = torch.tensor([0.1, 1.0, 2.0])
    images = [torch.randn(3, 64, 64) for _ in range(2)]
    labels = [torch.randint(0, 3, (64, 64)) for _ in range(2)]
    loss, n = task.loss(model, (images, labels, None), torch.device("cpu"))
    out = model(torch.stack(images))
    y = torch.stack(labels)
    expected = seg_loss(out["out"], y, task.class_weight) + 0.4 * seg_loss(out["aux"], y, task.class_weight)
    assert n == 2 and torch.allclose(loss, expected)
