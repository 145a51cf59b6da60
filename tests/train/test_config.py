"""The shipped recipes are the paper's (spec section 8), flags override them, bad settings are named."""

import argparse

import pytest

from litvit.train.cli import add_arguments
from litvit.train.config import (
    ConfigError,
    build_config,
    config_names,
    load_yaml,
    resolve_lrs,
)
from litvit.train.flags import overrides_from_args


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(argv)
    return build_config(args.config, overrides_from_args(args))


def test_every_released_model_has_a_config():
    names = set(config_names())
    assert {"litv2_s", "litv2_m", "litv2_b", "litv2_b_384", "lit_ti", "lit_s", "lit_m", "lit_b", "nano"} <= names
    for name in names:
        build_config(name)  # validates


@pytest.mark.parametrize(
    "name,drop_path",
    [("litv2_s", 0.2), ("litv2_m", 0.3), ("litv2_b", 0.5), ("lit_s", 0.2), ("lit_m", 0.3), ("lit_b", 0.5)],
)
def test_imagenet_recipe(name, drop_path):
    cfg = build_config(name)
    assert cfg.model == name and cfg.drop_path == drop_path and cfg.img_size == 224
    assert (cfg.opt, cfg.weight_decay, cfg.opt_eps, tuple(cfg.opt_betas)) == ("adamw", 0.05, 1e-8, (0.9, 0.999))
    assert (cfg.epochs, cfg.warmup_epochs, cfg.sched, cfg.sched_on) == (300, 20, "cosine", "step")
    assert (cfg.clip_grad, cfg.offset_lr_mult, cfg.auto_augment) == (5.0, 0.01, "rand-m9-mstd0.5-inc1")
    assert (cfg.mixup, cfg.cutmix, cfg.smoothing, cfg.reprob, cfg.hflip) == (0.8, 1.0, 0.1, 0.25, 0.5)
    assert cfg.crop_pct == 0.875 and not cfg.repeated_aug and not cfg.model_ema
    # 128 per GPU x 8 GPUs = 1024: lr 5e-4 -> 1e-3, warmup 5e-7 -> 1e-6, min 5e-6 -> 1e-5
    lrs = resolve_lrs(cfg, world_size=8)
    assert lrs["total_batch"] == 1024
    assert lrs["lr"] == pytest.approx(1e-3) and lrs["warmup_lr"] == pytest.approx(1e-6)
    assert lrs["min_lr"] == pytest.approx(1e-5)
    # accumulation multiplies the total batch, and so the learning rates
    cfg.accum_steps = 2
    assert resolve_lrs(cfg, world_size=8)["lr"] == pytest.approx(2e-3)


def test_finetune_384_and_lit_ti_recipes():
    ft = build_config("litv2_b_384")
    assert (ft.model, ft.img_size, ft.epochs, ft.warmup_epochs, ft.drop_path) == ("litv2_b", 384, 30, 5, 0.5)
    assert ft.weight_decay == 1e-8 and (ft.crop_pct, ft.crop_mode) == (1.0, "squash")
    lrs = resolve_lrs(ft, world_size=8)
    assert (lrs["lr"], lrs["warmup_lr"], lrs["min_lr"]) == pytest.approx((4e-5, 4e-8, 4e-7))

    ti = build_config("lit_ti")
    assert (ti.model, ti.drop_path, ti.sched_on, ti.warmup_epochs, ti.clip_grad) == ("lit_ti", 0.1, "epoch", 5, None)
    assert ti.repeated_aug
    lrs = resolve_lrs(ti, world_size=8)
    assert lrs["lr"] == pytest.approx(1e-3)
    assert (lrs["warmup_lr"], lrs["min_lr"]) == (1e-6, 1e-5)  # not scaled


def test_default_is_nano_on_the_embedded_digits():
    cfg = parse([])
    assert cfg.model == "litv2_nano" and cfg.data is None and cfg.img_size == 32
    assert cfg.hflip == 0.0 and cfg.mixup == 0 and cfg.cutmix == 0  # no flips for digits
    assert cfg.target_top1 == 95.0


def test_flags_override_the_config():
    cfg = parse(
        [
            "--config",
            "litv2_s",
            "--lr",
            "0.1",
            "--epochs",
            "3",
            "--warmup-epochs",
            "1",
            "--clip-grad",
            "none",
            "--scale",
            "0.5",
            "1",
            "--model-ema",
            "--model-kwargs",
            "alpha=0.5",
            "--no-scale-warmup-min-lr",
        ]
    )
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.clip_grad, cfg.scale, cfg.model_ema) == (
        "litv2_s",
        0.1,
        3,
        None,
        (0.5, 1.0),
        True,
    )
    assert cfg.model_kwargs == {"alpha": 0.5} and cfg.scale_warmup_min_lr is False
    assert cfg.drop_path == 0.2  # untouched values stay the config's
    assert resolve_lrs(cfg, 1)["lr"] == 0.1


def test_bad_settings_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: litv2_s\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        load_yaml(str(bad))
    with pytest.raises(ConfigError, match="did you mean 'litv2_s'"):
        load_yaml("litv2_x")
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        build_config("nano", {"epochs": "many"})
    with pytest.raises(ConfigError, match="even batch size"):
        build_config("litv2_s", {"batch_size": 3})
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [litv2_s\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(str(broken))
    broken.write_bytes(b"\xff\xfe\x00model: x")  # not UTF-8 (a UTF-16 file, a binary): was a UnicodeDecodeError
    with pytest.raises(ConfigError, match="not valid YAML .*codec can't decode"):
        load_yaml(str(broken))
