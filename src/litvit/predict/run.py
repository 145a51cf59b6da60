"""`predict`: the top-k classes of image files, in batches, with the model's own eval transform.

    from litvit.predict import predict
    records = predict(["photos/"], model="litv2_s", checkpoint="litv2_s.pth", top_k=5)
    records[0]  # {'path': 'photos/cat.jpg', 'top_k': [{'label': 'tabby, tabby cat', 'index': 281, 'prob': 0.62}, ...]}

The model and its weights are read as `litvit eval` reads them (litvit.eval.evaluate.load_eval_model: an official
release, a `litvit convert` output, a timm-style state_dict or a litvit training checkpoint with its class names;
no checkpoint: the released weights), and so is the transform (the paper's resize + centre crop at the model's
resolution, or a litvit run's own). Images go through the data loader eval uses, so an unreadable file is skipped
and named, never a crash.
"""

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from .. import runtime as rt
from ..data.build import eval_loader
from ..data.folder import ImageFileDataset
from ..data.transforms import eval_transform
from ..errors import ConfigError, DataError, RunInterrupted
from ..eval.evaluate import load_eval_model, model_data_config
from ..options import check_img_size
from ..tasks.classification import check_model_name
from ..train.log import progress_bar
from .classes import class_names, top_classes
from .inputs import PathArg, expand_inputs
from .output import check_output, write_records

__all__ = ["load_predict_model", "predict"]

Record = Dict[str, Any]


def _checked_int(value: Any, flag: str, smallest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ConfigError(f"{flag} must be an integer >= {smallest}, got {value!r}")
    return value


def load_predict_model(
    model: Optional[str] = None,
    checkpoint: Optional[str] = None,
    *,
    pretrained: bool = True,
    img_size: Optional[int] = None,
    ema: bool = False,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model in eval mode, {'model_name', and for a litvit run 'classes' and 'config'}).

    With a checkpoint, its weights; without one, the released weights (timm downloads them once) or, with
    `pretrained=False`, the random initialisation (nothing is downloaded: for trying the pipeline, not for answers).
    """
    check_img_size(img_size)
    if checkpoint is None and not pretrained:
        if model is None:
            raise ConfigError("pass --model NAME (or --checkpoint FILE)")
        check_model_name(model)
        import timm

        try:
            net, info = timm.create_model(model, **({"img_size": img_size} if img_size else {})), {"model_name": model}
        except TypeError as e:  # timm passes img_size on to a model that has no such keyword (a ResNet, ...)
            if img_size and "img_size" in str(e):
                raise ConfigError(f"{model} has no img_size keyword: drop --img-size") from None
            raise
    else:
        net, info = load_eval_model(model, checkpoint, ema, None, img_size)
    return net.eval(), info


def _warner(bar: Any) -> Callable[[str, str], None]:
    """The default `on_skip`: a warning line on stderr, written above the progress bar when there is one."""

    def warn(path: str, reason: str) -> None:
        line = f"warning: skipped {path} ({reason})"
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    return warn


def predict(
    inputs: Union[PathArg, Sequence[PathArg]],
    model: Union[str, nn.Module, None] = None,
    checkpoint: Optional[str] = None,
    *,
    top_k: int = 5,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    img_size: Optional[int] = None,
    pretrained: bool = True,
    ema: bool = False,
    classes: Optional[Sequence[str]] = None,
    workers: int = 0,
    progress: Optional[bool] = None,
    output: Optional[str] = None,
    on_skip: Optional[Callable[[str, str], None]] = None,
) -> List[Record]:
    """The `top_k` most probable classes of every image in `inputs` (files, folders, glob patterns), in order.

    `model` is a timm name (weights from `checkpoint`, else the released ones, else random with
    `pretrained=False`) or a model object (named by `classes`, else as `class_names` names it). An unreadable file
    is passed to `on_skip(path, reason)` (default: a warning line on stderr) and left out; `output` (.jsonl / .csv)
    also writes the records, atomically. Bad arguments raise a LitvitError with a one-line message before any
    image is read.
    """
    check_img_size(img_size)
    top_k = _checked_int(top_k, "--top-k", 1)
    batch_size = _checked_int(batch_size, "--batch-size", 1)
    workers = _checked_int(workers, "--workers", 0)
    if output is not None:
        check_output(output)
    files = expand_inputs(inputs)
    dev = rt.resolve_device(device)
    amp = rt.autocast_dtype(precision, dev)
    if isinstance(model, nn.Module):
        net, info = model.eval(), {"classes": list(classes) if classes is not None else None}
    else:
        net, info = load_predict_model(model, checkpoint, pretrained=pretrained, img_size=img_size, ema=ema)
        if classes is not None:
            info["classes"] = list(classes)
    labels = class_names(net, info)
    if classes is not None and len(labels) != len(classes):
        raise ConfigError(f"{len(classes)} class names for a model with {len(labels)} classes: pass one name each")
    dcfg = model_data_config(net, info, img_size)
    net.to(dev)

    # photos upright, as a viewer shows them (their EXIF orientation); `litvit eval` reads the stored pixels
    dataset = ImageFileDataset(
        [(f, i) for i, f in enumerate(files)], [], eval_transform(dcfg), "skip", exif_orientation=True
    )
    loader = eval_loader(dataset, batch_size, workers, pin_memory=dev.type == "cuda")
    bar = progress_bar(progress, len(files), 0, "predict")
    skip = on_skip or _warner(bar)
    records: List[Record] = []
    try:
        for images, indices, bad in loader:
            for path, reason in bad:
                skip(path, reason)
            if images is not None:
                guesses = top_classes(net, images.to(dev, non_blocking=True), labels, top_k, amp)
                for i, top in zip(indices.tolist(), guesses):
                    records.append(
                        {"path": files[i], "top_k": [{"label": n, "index": c, "prob": p} for n, c, p in top]}
                    )
            if bar is not None:
                bar.update(len(indices) + len(bad))
    except KeyboardInterrupt:  # Ctrl-C in a long run: keep what is done
        if output is None or not records:
            raise
        write_records(records, output)
        raise RunInterrupted(
            f"interrupted after {len(records)} of {len(files)} image(s): their predictions are in {output}"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    if not records:
        raise DataError(f"none of the {len(files)} file(s) could be read as an image: pass PNG, JPEG, WebP, ... files")
    if output is not None:
        write_records(records, output)
    return records
