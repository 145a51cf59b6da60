"""The training configuration: defaults (the paper's ImageNet recipe, spec section 8.1) < a shipped or user YAML
(`--config`) < command-line flags. The resolved configuration is a plain dict, stored in every checkpoint."""

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

from ..errors import ConfigError
from ..options import BAD_IMAGE_MODES, DEVICES, PRECISIONS, TASKS, check_crop_pct, check_img_size

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "nano"
# The config a plain `litvit train --task T` runs: a small model on the embedded data, on a CPU.
TASK_DEFAULT_CONFIGS = {"classification": "nano", "detection": "scenes_det", "segmentation": "scenes_seg"}
TASK_NAMES = {"cls": "classification", "det": "detection", "seg": "segmentation"}


def _f(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=dict(help=help, **meta))
    return field(default=default, metadata=dict(help=help, **meta))


@dataclass
class TrainConfig:
    task: str = _f(
        "classification",
        "what to train: classification (cls), detection (det: COCO), segmentation (seg: ADE20K)",
        group="model",
        choices=TASKS,
    )
    # model
    model: str = _f("litv2_s", "timm model name (litv2_s/m/b, lit_ti, lit_s/m/b, litv2_nano, ...)", group="model")
    model_kwargs: Dict[str, Any] = _f({}, "extra model keywords, KEY=VALUE (e.g. alpha=0.5)", group="model")
    pretrained: Optional[str] = _f(
        None,
        "start from this official or litvit checkpoint (the head is re-initialised for another class count)",
        group="model",
    )
    num_classes: Optional[int] = _f(None, "class count (default: the data's; must match it)", group="model")
    drop_path: Optional[float] = _f(None, "stochastic depth rate (default: the model's)", group="model")
    img_size: Optional[int] = _f(None, "training / eval resolution (default: the model's)", group="model")
    grad_checkpointing: bool = _f(False, "recompute activations in backward (less memory, slower)", group="model")
    sync_bn: bool = _f(False, "SyncBatchNorm for the token-merging BatchNorms (multi-GPU)", group="model")
    channels_last: Optional[bool] = _f(None, "channels-last memory format (default: on GPU only)", group="model")
    # data
    data: Optional[str] = _f(None, "ImageFolder root with train/ and val/ (default: the embedded digits)", group="data")
    train_split: str = _f("train", "training sub-folder of --data", group="data")
    val_split: str = _f("val", "validation sub-folder of --data", group="data")
    bad_images: str = _f(
        "skip", "unreadable image files: skip (counted, named) or error", group="data", choices=BAD_IMAGE_MODES
    )
    bad_annotations: str = _f(
        "skip",
        "detection / segmentation annotations that cannot be used (unknown ids, zero-area boxes, missing or "
        "mis-sized masks / label maps, images without objects): skip (counted, named) or error",
        group="data",
        choices=BAD_IMAGE_MODES,
    )
    workers: Optional[int] = _f(
        None, "data-loading processes per rank (default: 0 for digits, else up to 8)", group="data"
    )
    batch_size: int = _f(128, "images per process per micro-batch", group="data")
    eval_batch_size: Optional[int] = _f(None, "evaluation batch size (default: --batch-size)", group="data")
    repeated_aug: bool = _f(False, "repeated augmentation (timm RepeatAugSampler, 3 repeats)", group="data")
    # augmentation (timm create_transform / Mixup)
    scale: Tuple[float, float] = _f((0.08, 1.0), "RandomResizedCrop area range", group="augmentation")
    ratio: Tuple[float, float] = _f((0.75, 4.0 / 3.0), "RandomResizedCrop aspect range", group="augmentation")
    hflip: float = _f(0.5, "horizontal flip probability", group="augmentation")
    color_jitter: float = _f(0.4, "color jitter (not applied with --auto-augment)", group="augmentation")
    auto_augment: Optional[str] = _f("rand-m9-mstd0.5-inc1", "timm auto-augment policy, or none", group="augmentation")
    train_interpolation: str = _f("bicubic", "training resize interpolation", group="augmentation")
    reprob: float = _f(0.25, "random erasing probability", group="augmentation")
    remode: str = _f("pixel", "random erasing mode", group="augmentation")
    recount: int = _f(1, "random erasing count", group="augmentation")
    mixup: float = _f(0.8, "mixup alpha (0 = off)", group="augmentation")
    cutmix: float = _f(1.0, "cutmix alpha (0 = off)", group="augmentation")
    mixup_prob: float = _f(1.0, "probability of mixup or cutmix per batch", group="augmentation")
    mixup_switch_prob: float = _f(0.5, "probability of cutmix instead of mixup", group="augmentation")
    mixup_mode: str = _f("batch", "mixup mode (batch, pair, elem)", group="augmentation")
    smoothing: float = _f(0.1, "label smoothing", group="augmentation")
    interpolation: Optional[str] = _f(
        None, "eval resize interpolation (default: the model's, bicubic)", group="augmentation"
    )
    crop_pct: Optional[float] = _f(
        None, "eval centre-crop fraction (default: the model's, 0.875 at 224)", group="augmentation"
    )
    crop_mode: Optional[str] = _f(
        None, "eval crop: center, or squash (resize to size, no crop; default when crop_pct is 1)", group="augmentation"
    )
    # detection / segmentation (img_size is the short side: detection resize, segmentation crop and test scale)
    max_size: Optional[int] = _f(
        None, "longest image side: detection resize (1333), segmentation scale (2048)", group="dense"
    )
    ratio_range: Tuple[float, float] = _f((0.5, 2.0), "segmentation: random rescale range", group="dense")
    cat_max_ratio: float = _f(0.75, "segmentation: re-draw a crop where one class covers more of it", group="dense")
    photometric: bool = _f(True, "segmentation: photometric distortion (brightness, contrast, colour)", group="dense")
    class_weight: List[float] = _f(
        [], "segmentation: cross-entropy weight of each class (mmseg's class_weight; none: all 1)", group="dense"
    )
    # optimisation
    opt: str = _f("adamw", "timm optimizer name", group="optimization")
    opt_eps: float = _f(1e-8, "optimizer epsilon", group="optimization")
    opt_betas: Tuple[float, float] = _f((0.9, 0.999), "optimizer betas", group="optimization")
    momentum: float = _f(0.9, "SGD momentum (SGD-type optimizers only)", group="optimization")
    weight_decay: float = _f(0.05, "weight decay (none on norms, biases, tables, tokens)", group="optimization")
    offset_lr_mult: float = _f(0.01, "lr multiplier of the deformable offset convs' weights", group="optimization")
    base_lr: float = _f(5e-4, "lr per --lr-base-size images of total batch", group="optimization")
    base_warmup_lr: float = _f(5e-7, "warmup start lr per --lr-base-size images", group="optimization")
    base_min_lr: float = _f(5e-6, "final lr per --lr-base-size images", group="optimization")
    lr_base_size: int = _f(512, "total batch the base lrs refer to (0 = do not scale)", group="optimization")
    scale_warmup_min_lr: bool = _f(
        True, "scale warmup and min lr with the batch too (LIT-Ti: no)", group="optimization"
    )
    lr: Optional[float] = _f(None, "absolute lr (overrides --base-lr scaling)", group="optimization")
    warmup_lr: Optional[float] = _f(None, "absolute warmup start lr", group="optimization")
    min_lr: Optional[float] = _f(None, "absolute final lr", group="optimization")
    sched: str = _f("cosine", "timm scheduler name", group="optimization")
    sched_on: str = _f(
        "step", "update the lr every optimizer step or every epoch", group="optimization", choices=("step", "epoch")
    )
    epochs: int = _f(300, "training epochs", group="optimization")
    warmup_epochs: int = _f(20, "linear warmup epochs", group="optimization")
    warmup_steps: int = _f(
        0, "linear warmup in optimizer steps instead of epochs (0 = --warmup-epochs)", group="optimization"
    )
    decay_milestones: List[float] = _f([], "epochs at which the multistep schedule decays the lr", group="optimization")
    decay_rate: float = _f(
        0.1, "lr factor at each milestone (multistep); the power of the poly schedule", group="optimization"
    )
    weight_decay_groups: str = _f(
        "official",
        "which parameters get no weight decay: official (norms, biases, tables, tokens), all decayed, or "
        "no_norm (names containing 'norm': mmcv's custom_keys of the Mask R-CNN recipe)",
        group="optimization",
        choices=("official", "all", "no_norm"),
    )
    cooldown_epochs: int = _f(0, "epochs at min lr after the schedule (added to --epochs)", group="optimization")
    clip_grad: Optional[float] = _f(5.0, "gradient clipping threshold, or none", group="optimization")
    clip_mode: str = _f("norm", "gradient clipping mode (norm, value, agc)", group="optimization")
    accum_steps: int = _f(1, "gradient accumulation: micro-batches per optimizer step", group="optimization")
    amp: str = _f(
        "auto",
        "precision: auto (bf16 autocast on GPUs that have it, else fp16; fp32 on CPU), bf16, fp16, fp32 (= off)",
        group="optimization",
        choices=PRECISIONS,
    )
    model_ema: bool = _f(
        False, "keep an exponential moving average of the weights (timm ModelEmaV3)", group="optimization"
    )
    model_ema_decay: float = _f(0.9998, "EMA decay", group="optimization")
    # run
    seed: int = _f(0, "random seed (each rank uses seed + rank for its own stream)", group="run")
    deterministic: bool = _f(False, "deterministic algorithms (bitwise-reproducible CPU runs and resumes)", group="run")
    threads: Optional[int] = _f(
        None, "CPU threads per process (default: torch's; 1 is often faster on a busy or small machine)", group="run"
    )
    device: str = _f("auto", "auto, cpu or cuda", group="run", choices=DEVICES)
    output: Optional[str] = _f(None, "output folder (default: runs/<model>-<time>)", group="run")
    save_every_steps: int = _f(0, "also save last.pth every N optimizer steps (0 = at epoch ends only)", group="run")
    log_interval: int = _f(50, "optimizer steps between log lines (when there is no progress bar)", group="run")
    progress: Optional[bool] = _f(None, "progress bar (default: when the terminal is interactive)", group="run")
    tensorboard: bool = _f(False, "also write TensorBoard logs (needs the tensorboard package)", group="run")
    log_samples: bool = _f(False, "record which samples each rank trained on (samples.jsonl)", group="run")
    target_top1: Optional[float] = _f(
        None,
        "the task's val score (%) the run should reach (top-1, bbox mAP, mIoU); reported at the end",
        group="run",
    )

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "the configuration") -> "TrainConfig":
        check_keys(values, source)
        cfg = cls(**{k: _coerce(k, v, source) for k, v in values.items()})
        validate(cfg)
        return cfg


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def check_keys(values: Dict[str, Any], source: str) -> None:
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r} in {source}{hint}; `litvit train --help` lists the settings")


def field_kind(name: str) -> str:
    t = str(FIELDS[name].type)
    for kind in ("Dict", "Tuple", "List", "bool", "int", "float", "str"):
        if kind in t:
            return kind
    return "str"


def _coerce(name: str, value: Any, source: str) -> Any:
    """YAML / flag values to the field's type (ints where floats are expected, lists for pairs, 'none' for None)."""
    kind = field_kind(name)
    optional = "Optional" in str(FIELDS[name].type)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and kind != "Dict"):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be none (in {source})")
    try:
        if kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind == "Tuple":
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise TypeError
            return (float(value[0]), float(value[1]))
        if kind == "Dict":
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if kind == "List":
            if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) for v in value):
                raise TypeError
            return [float(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
        want = {
            "Tuple": "a pair of numbers",
            "Dict": "a mapping",
            "List": "a list of numbers",
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
        }.get(kind, "a string")
        raise ConfigError(f"{name} must be {want}, got {value!r} (in {source})") from None


def validate(cfg: TrainConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}")
    need(
        0 <= cfg.warmup_epochs <= cfg.epochs,
        f"warmup_epochs ({cfg.warmup_epochs}) must be between 0 and epochs ({cfg.epochs})",
    )
    need(cfg.cooldown_epochs >= 0, "cooldown_epochs must be >= 0")
    need(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}")
    need(cfg.eval_batch_size is None or cfg.eval_batch_size >= 1, "eval_batch_size must be >= 1")
    need(cfg.accum_steps >= 1, f"accum_steps must be >= 1, got {cfg.accum_steps}")
    need(cfg.workers is None or cfg.workers >= 0, "workers must be >= 0")
    need(cfg.threads is None or cfg.threads >= 1, "threads must be >= 1")
    need(cfg.save_every_steps >= 0, "save_every_steps must be >= 0 (0 = only at epoch ends)")
    need(cfg.log_interval >= 1, "log_interval must be >= 1")
    need(cfg.num_classes is None or cfg.num_classes >= 1, "num_classes must be >= 1")
    need(cfg.drop_path is None or 0.0 <= cfg.drop_path < 1.0, f"drop_path must be in [0, 1), got {cfg.drop_path}")
    check_img_size(cfg.img_size, "img_size")
    need(cfg.bad_images in BAD_IMAGE_MODES, f"bad_images must be skip or error, got {cfg.bad_images!r}")
    need(cfg.amp in PRECISIONS, f"amp must be auto, fp32 (off), bf16 or fp16, got {cfg.amp!r}")
    need(cfg.sched_on in ("step", "epoch"), f"sched_on must be step or epoch, got {cfg.sched_on!r}")
    need(cfg.device in DEVICES, f"device must be auto, cpu or cuda, got {cfg.device!r}")
    need(cfg.mixup >= 0 and cfg.cutmix >= 0, "mixup and cutmix must be >= 0")
    need(0.0 <= cfg.smoothing < 1.0, f"smoothing must be in [0, 1), got {cfg.smoothing}")
    need(
        cfg.crop_mode in (None, "center", "squash", "border"),
        f"crop_mode must be center or squash, got {cfg.crop_mode!r}",
    )
    check_crop_pct(cfg.crop_pct, "crop_pct")
    _validate_augmentation(cfg, need)
    _validate_optimization(cfg, need)
    need(0.0 < cfg.model_ema_decay < 1.0, "model_ema_decay must be in (0, 1)")
    need(cfg.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
    need(cfg.warmup_steps >= 0, "warmup_steps must be >= 0")
    need(cfg.max_size is None or cfg.max_size >= 1, "max_size must be >= 1")
    need(0 < cfg.ratio_range[0] <= cfg.ratio_range[1], f"ratio_range must be 0 < A <= B, got {cfg.ratio_range}")
    need(0.0 < cfg.cat_max_ratio <= 1.0, f"cat_max_ratio must be in (0, 1], got {cfg.cat_max_ratio}")
    need(
        all(math.isfinite(w) and w >= 0 for w in cfg.class_weight) and (not cfg.class_weight or sum(cfg.class_weight)),
        f"class_weight must be finite numbers >= 0, not all 0, got {cfg.class_weight}",
    )
    need(
        not cfg.class_weight or task_name(cfg.task) == "segmentation",
        "class_weight applies to --task seg only: drop it",
    )
    need(cfg.decay_rate > 0, "decay_rate must be > 0")
    need(
        cfg.target_top1 is None or 0.0 <= cfg.target_top1 <= 100.0,
        f"target_top1 is a score in percent: it must be in [0, 100], got {cfg.target_top1}",
    )
    need(
        cfg.weight_decay_groups in ("official", "all", "no_norm"),
        f"weight_decay_groups must be official, all or no_norm, got {cfg.weight_decay_groups!r}",
    )
    mixing = task_name(cfg.task) == "classification" and (cfg.mixup > 0 or cfg.cutmix > 0)
    need(
        not mixing or cfg.batch_size % 2 == 0,
        f"mixup / cutmix need an even batch size per process, got {cfg.batch_size}: pass an even --batch-size "
        "or --mixup 0 --cutmix 0",
    )


def _validate_augmentation(cfg: TrainConfig, need: Callable[[bool, str], None]) -> None:
    """The augmentation ranges, checked here because timm's transforms accept them and fail (or silently misbehave)
    only when the first image is drawn."""
    lo, hi = cfg.scale
    need(0.0 < lo <= hi <= 1.0, f"scale must be 0 < A <= B <= 1 (fractions of the image area), got {lo} {hi}")
    lo, hi = cfg.ratio
    need(0.0 < lo <= hi and math.isfinite(hi), f"ratio must be 0 < A <= B (crop aspect ratios), got {lo} {hi}")
    for name in ("hflip", "reprob", "mixup_prob", "mixup_switch_prob"):
        value = getattr(cfg, name)
        need(0.0 <= value <= 1.0, f"{name} is a probability: it must be in [0, 1], got {value}")
    need(cfg.color_jitter >= 0, f"color_jitter must be >= 0, got {cfg.color_jitter}")
    need(cfg.remode in ("const", "rand", "pixel"), f"remode must be const, rand or pixel, got {cfg.remode!r}")
    need(cfg.recount >= 1, f"recount must be >= 1, got {cfg.recount}")
    need(cfg.mixup_mode in ("batch", "pair", "elem"), f"mixup_mode must be batch, pair or elem, got {cfg.mixup_mode!r}")


def _validate_optimization(cfg: TrainConfig, need: Callable[[bool, str], None]) -> None:
    for name in ("lr", "warmup_lr", "min_lr"):
        v = getattr(cfg, name)
        need(v is None or (v >= 0 and math.isfinite(v)), f"{name} must be a finite number >= 0, got {v}")
    need(cfg.base_lr > 0, "base_lr must be > 0")
    for name in ("base_warmup_lr", "base_min_lr", "momentum", "weight_decay", "offset_lr_mult"):
        value = getattr(cfg, name)
        need(value >= 0 and math.isfinite(value), f"{name} must be a finite number >= 0, got {value}")
    need(cfg.opt_eps > 0, f"opt_eps must be > 0, got {cfg.opt_eps}")
    need(all(0.0 <= b < 1.0 for b in cfg.opt_betas), f"opt_betas must be in [0, 1), got {list(cfg.opt_betas)}")
    need(cfg.lr_base_size >= 0, f"lr_base_size must be >= 0 (0 = do not scale), got {cfg.lr_base_size}")
    need(all(m >= 0 for m in cfg.decay_milestones), f"decay_milestones must be epochs >= 0, got {cfg.decay_milestones}")
    need(
        cfg.clip_grad is None or (cfg.clip_grad > 0 and math.isfinite(cfg.clip_grad)),
        f"clip_grad must be a number > 0, or none for no clipping, got {cfg.clip_grad}",
    )
    need(cfg.clip_mode in ("norm", "value", "agc"), f"clip_mode must be norm, value or agc, got {cfg.clip_mode!r}")


def task_name(name: str) -> str:
    """The full name of a task ('det' -> 'detection')."""
    return TASK_NAMES.get(name, name)


def resolve_lrs(cfg: TrainConfig, world_size: int) -> Dict[str, float]:
    """lr, warmup lr and min lr for this run: the base values x total batch / lr_base_size (the official linear
    scaling, total batch = batch per process x processes x accumulation steps), unless given absolutely."""
    total = cfg.batch_size * world_size * cfg.accum_steps
    factor = total / cfg.lr_base_size if cfg.lr_base_size else 1.0
    side = factor if cfg.scale_warmup_min_lr else 1.0
    return {
        "total_batch": total,
        "lr": cfg.lr if cfg.lr is not None else cfg.base_lr * factor,
        "warmup_lr": cfg.warmup_lr if cfg.warmup_lr is not None else cfg.base_warmup_lr * side,
        "min_lr": cfg.min_lr if cfg.min_lr is not None else cfg.base_min_lr * side,
    }


def config_names() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_yaml(name_or_path: str) -> Dict[str, Any]:
    """A shipped config by name (`litv2_s`, `nano`, ...) or a YAML file; its keys are TrainConfig fields."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(str(name_or_path), config_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"no config {name_or_path!r}{hint}: pass a YAML file or one of {', '.join(config_names())}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{str(path)!r} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    except OSError as e:  # a folder named like a config, no permission
        raise ConfigError(f"cannot read {str(path)!r} ({e.strerror or e}): pass a readable YAML file") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{str(path)!r} must hold a mapping of settings (key: value), not {type(values).__name__}")
    check_keys(values, str(path))
    return values


def build_config(
    config: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None, base: Optional[Dict[str, Any]] = None
) -> TrainConfig:
    """Defaults < `base` (a resumed run's config) or the YAML `config` (default: the task's small config, nano for
    classification) < `overrides`."""
    config = config or default_config(overrides)
    values: Dict[str, Any] = dict(base) if base is not None else load_yaml(config)
    values.update(overrides or {})
    source = "the resumed run's config" if base is not None else config
    return TrainConfig.from_dict(values, source=source)


def default_config(overrides: Optional[Dict[str, Any]] = None) -> str:
    """The shipped config a run without --config starts from: the one of its --task (nano for classification)."""
    task = task_name(str((overrides or {}).get("task", "classification")))
    return TASK_DEFAULT_CONFIGS.get(task, DEFAULT_CONFIG)
