"""``textvae train``: one training run. Its settings are resolved by :func:`textvae.config.settings.resolve_train`
(``--config`` params.yaml: global → ``--dataset`` → ``--method``) with the options laid on top, the same route
the pipeline's runs take (their commands name the dataset and the method, nothing else); every option is
derived from the knobs' declarations (:mod:`textvae.config.knobs`) and checked before anything is written;
then :class:`textvae.training.trainer.Trainer` runs it."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from textvae.config.knobs import SIZE_KNOBS, TRAIN_KNOBS, TrainConfig, add_options
from textvae.config.settings import load_params, param_lines, resolve_train
from textvae.core.errors import ConfigError
from textvae.modeling.methods import METHODS
from textvae.training.trainer import Trainer, check_run, run_lock


def setup_logging(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("textvae")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(out_dir / "train.log")):
        h.setFormatter(fmt)
        root.addHandler(h)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one model (any method of the paper)",
                              description="Train one model on a prepared corpus (data/DATASET/{train,valid}.txt). "
                                          "Writes RUN_DIR/{last.pt,best.pt,metrics.jsonl,train.log,vocab.txt,config.json}. "
                                          "Settings: the declared defaults, then params.yaml (--config: global, "
                                          "the dataset's, the method's), then these options.")
    p.add_argument("--data", required=True, help="prepared corpus directory holding train.txt and valid.txt")
    p.add_argument("--method", required=True, help="one of: " + ", ".join(METHODS))
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="params.yaml: the run's settings as the pipeline resolves them (global → "
                   "dataset → method)")
    p.add_argument("--dataset", help="dataset name in params.yaml (default: the --data folder name)")
    add_options(p, SIZE_KNOBS.values())
    # defaults in the help are the declared ones; unset options leave params.yaml's values standing
    add_options(p, TRAIN_KNOBS.values())
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/last.pt if it is the state of this same run (same settings, data "
                        "and AE checkpoint; --epochs and --device may differ); otherwise start from epoch 0")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_train)


def resolve(args) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's TrainConfig and model sizes: declared defaults → params.yaml (``--config``) → options."""
    values: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    if args.config:
        dataset = args.dataset or Path(args.data).name
        values, sizes = resolve_train(load_params(args.config), dataset, args.method, args.config,
                                      param_lines(args.config))
    for k in SIZE_KNOBS:
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    for k in TRAIN_KNOBS:
        if getattr(args, k, None) is not None:
            values[k] = getattr(args, k)
    if args.no_progress or not sys.stderr.isatty():
        values["progress"] = False
    return TrainConfig(method=args.method, **values), sizes


def _cli_train(args) -> int:
    out = Path(args.out)
    cfg, sizes = resolve(args)
    check_run(cfg, args.data, sizes)   # a bad option creates nothing
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    created = not out.exists()
    try:
        with run_lock(out):
            trainer = Trainer(cfg, args.data, out, sizes)   # reads the corpora; a bad one stops here
            setup_logging(out)
            result = trainer.fit(resume=args.resume, locked=True)
    except BaseException:
        if created:   # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    print(f"trained {cfg.method} for {result['epochs']} epochs; best validation {result['best_val']:.4f}; "
          f"{out / 'best.pt'}")
    return 0
