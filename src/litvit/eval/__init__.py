"""`litvit eval`: top-1 / top-5 of a model and checkpoint on a validation set, with the paper's eval transform.

`litvit.eval.evaluate` holds the work (`load_eval_model`, `run_eval`); `litvit.eval.cli` the arguments, which import
no torch so that `--help` is instant.
"""
