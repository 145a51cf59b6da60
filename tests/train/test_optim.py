"""The official parameter groups and the per-iteration schedule, as the trainer builds them."""

import math

import pytest
import timm
import torch

from litvit.tasks.classification import build_model
from litvit.train.build import build_optimizer, build_scheduler
from litvit.train.config import build_config, resolve_lrs
from litvit.train.optim import official_param_groups


def group_of(groups, model):
    ids = {id(p): i for i, g in enumerate(groups) for p in g["params"]}
    return {name: ids[id(p)] for name, p in model.named_parameters()}


def test_litv2_groups_decay_no_decay_and_offsets():
    model = timm.create_model("litv2_nano", num_classes=3)
    groups = official_param_groups(0.05, 1e-3, 0.01)(model)
    where = group_of(groups, model)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.05]
    assert groups[2]["lr"] == pytest.approx(1e-5) and "lr" not in groups[0]
    offsets = [n for n, g in where.items() if g == 2]
    assert offsets and all(n.endswith("conv_offset.weight") for n in offsets)
    assert where["layers.0.downsample.dconv.conv_offset.bias"] == 1  # offset biases: no decay, normal lr
    assert where["layers.0.downsample.norm_layer.weight"] == 1  # DTM BatchNorm
    assert where["norm.weight"] == 1 and where["head.bias"] == 1
    assert where["head.weight"] == 0 and where["layers.0.downsample.dconv.weight"] == 0
    assert len(where) == sum(len(g["params"]) for g in groups)


def test_lit_tables_and_lit_ti_cls_token():
    lit = timm.create_model(
        "lit_s", embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), img_size=32, num_classes=2
    )
    where = group_of(official_param_groups(0.05, 1e-3)(lit), lit)
    tables = [n for n in where if "relative_position_bias_table" in n]
    assert tables and all(where[n] == 1 for n in tables)
    ti = timm.create_model(
        "lit_ti",
        embed_dims=(8, 8, 8, 8),
        num_heads=(1, 1, 1, 1),
        mlp_ratios=(1, 1, 1, 1),
        depths=(1, 1, 1, 1),
        img_size=32,
        num_classes=2,
    )
    where = group_of(official_param_groups(0.05, 1e-3)(ti), ti)
    assert where["cls_token"] == 1
    assert where["pos_embed1"] == 0  # LIT-Ti's position embeddings do get weight decay (spec 8.3)


def test_optimizer_and_per_iteration_schedule_without_data():
    """The optimizer and schedule are plain functions of the settings and the model: no data tree needed."""
    cfg = build_config("nano", {"batch_size": 4, "epochs": 4, "warmup_epochs": 1})
    model = build_model(cfg, num_classes=3)
    lrs = resolve_lrs(cfg, world_size=1)
    per_epoch = 24 // 4  # 24 training images, batch 4
    opt = build_optimizer(model, cfg, lrs["lr"])
    sched, total_epochs = build_scheduler(opt, cfg, lrs, per_epoch)
    assert total_epochs == 4
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["eps"] == 1e-8 and opt.defaults["betas"] == (0.9, 0.999)
    lr, warm, low = lrs["lr"], lrs["warmup_lr"], lrs["min_lr"]
    assert lr == pytest.approx(1.6e-2 * 4 / 512) and low == pytest.approx(1.6e-4 * 4 / 512)
    lrs = []
    for t in range(4 * per_epoch + 1):
        sched.step_update(num_updates=t)
        lrs.append([g["lr"] for g in opt.param_groups])
    total = 4 * per_epoch
    for t in range(per_epoch):  # linear warmup from warmup_lr over warmup_epochs, per iteration
        assert lrs[t][0] == pytest.approx(warm + t * (lr - warm) / per_epoch)
    for t in range(per_epoch, total + 1):  # then cosine over the whole run (timm, warmup_prefix=False)
        assert lrs[t][0] == pytest.approx(low + 0.5 * (lr - low) * (1 + math.cos(math.pi * t / total)))
    assert lrs[-1][0] == pytest.approx(low)
    # the offset group's base (lr x 0.01) equals min_lr: it warms up to it and stays there (spec 8.1)
    assert all(step[2] == pytest.approx(low) for step in lrs[per_epoch:])
