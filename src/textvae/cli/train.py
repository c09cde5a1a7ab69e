"""``textvae train``: the options of one training run, read from params.yaml (``--config``, through
:func:`textvae.config.settings.train_settings`) and the command line (flags win), checked before anything is written;
then :class:`textvae.training.trainer.Trainer` runs it."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from textvae import DEFAULT_SEED
from textvae.core.errors import ConfigError
from textvae.modeling.methods import METHODS, PRETRAIN_SOURCE
from textvae.modeling.model import ENCODER_INITS
from textvae.config.settings import MODEL_KEYS, load_params, train_settings
from textvae.training.trainer import TrainConfig, Trainer, check_run, run_lock


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
                                          "Writes RUN_DIR/{last.pt,best.pt,metrics.jsonl,train.log,vocab.txt,config.json}.")
    p.add_argument("--data", required=True, help="prepared corpus directory holding train.txt and valid.txt")
    p.add_argument("--method", required=True, help="one of: " + ", ".join(METHODS))
    needs_lam = [m.name for m in METHODS.values() if m.needs_lam]
    pretrained = [m.name for m in METHODS.values() if m.pretrained_encoder]
    p.add_argument("--lam", type=float, help=f"target rate λ in nats ({', '.join(needs_lam)}); FB uses λ/nz per "
                   "dimension")
    p.add_argument("--init-from", help=f"AE checkpoint (best.pt of method {PRETRAIN_SOURCE}) for "
                   f"{', '.join(pretrained)}")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="params.yaml: training constants, SPEC choices and model sizes")
    p.add_argument("--dataset", help="dataset name in params.yaml whose sizes to use (default: the --data folder name)")
    for k in MODEL_KEYS:
        p.add_argument("--" + k.replace("_", "-"), type=float if k.startswith("dropout") else int,
                       help=f"model size override: {k}")
    p.add_argument("--epochs", type=int, dest="max_epochs", help="maximum epochs (default 100)")
    p.add_argument("--max-train", type=int, help="use only the first N training examples")
    p.add_argument("--max-valid", type=int, help="use only the first N validation examples")
    p.add_argument("--seed", type=int, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--lr", type=float, help="initial learning rate (default: the method's, SPEC 4)")
    p.add_argument("--encoder-init", choices=list(ENCODER_INITS),
                   help="initialise a new encoder as SPEC 2.4 (spec, default) or with PyTorch's defaults (torch)")
    p.add_argument("--patience", type=int, help="lr-decay patience in epochs (default: the method's)")
    p.add_argument("--min-epoch", type=int, help="no lr decay before this epoch (default: the method's)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--warm-up", type=float, help="KL annealing length in epochs (default 10)")
    p.add_argument("--kl-start", type=float, help="first β of linear annealing (default: the method's)")
    p.add_argument("--fbp-mode", choices=["per_example", "batch_mean"], help="FBP threshold mode (SPEC 3.4)")
    p.add_argument("--iwae-k", type=int, help="IWAE samples (default 10)")
    p.add_argument("--iwae-code-compat", action="store_true", default=None,
                   help="train IWAE with the authors' sign-flipped bound (SPEC 3.9)")
    p.add_argument("--aggressive-clip", choices=["all", "encoder"],
                   help="aggressive inner steps: clip over all grads (He et al.) or encoder grads only (faster)")
    p.add_argument("--aggressive-max-steps", type=int,
                   help="aggressive: at most this many encoder steps per batch, minus one (default 100, SPEC 3.8)")
    p.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="bf16 autocast with float32 weights and losses")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/last.pt if it is the state of this same run (same settings, data "
                        "and AE checkpoint; --epochs and --device may differ); otherwise start from epoch 0")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_train)


def _cli_train(args) -> int:
    out = Path(args.out)
    overrides: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    if args.config:
        dataset = args.dataset or Path(args.data).name
        overrides, sizes = train_settings(load_params(args.config), dataset, TrainConfig.field_names(),
                                          Path(args.config))
    for k in MODEL_KEYS:
        v = getattr(args, k)
        if v is not None:
            sizes[k] = v
    names = TrainConfig.field_names()
    for k, v in vars(args).items():
        if k in names and v is not None and k != "method":
            overrides[k] = v
    if args.no_progress or not sys.stderr.isatty():
        overrides["progress"] = False
    cfg = TrainConfig(method=args.method, **{k: v for k, v in overrides.items() if k != "method"})
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
