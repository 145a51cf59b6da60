"""`litvit eval`: top-1 / top-5 of a model and checkpoint on a validation set, with the paper's eval transform."""

from .evaluate import eval_loader, evaluate, load_eval_model, val_dataset

__all__ = ["eval_loader", "evaluate", "load_eval_model", "val_dataset"]
