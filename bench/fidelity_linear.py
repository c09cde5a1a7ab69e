"""The supervised (linear) classification probe against the authors' text_ss_ft.py, on the same features, initial
weights and batches (docs/fidelity.md, "Classification probes").

    python bench/fidelity_linear.py --authors LI_DIR [--seeds 783435 101 202] [--json out.json] [--fixture F]

Features: the fixed synthetic two-class 8-d vectors of bench/fidelity_probes.py (numpy seed 0; the first 500
training vectors, 500 validation, 500 test), labels 0/1. Their side runs ``text_ss_ft.main()`` from a copy of
the checkout as written, with ``--dataset short_yelp --num_label 500 --freeze_enc`` (the linear discriminator,
SGD lr 1.0, batch 16, 10 logits, clip 5, decay ×0.5 after 2 rises, reload, stop after 5 decays, ≤ 100 epochs),
on a labelled text corpus in which sentence i of a split is one token naming it followed by 0-7 filler tokens
(numpy seed 1: lengths as varied as short Yelp, so their length buckets and numpy's unstable argsort matter).
Four names of their module are replaced around main(): ``GaussianLSTMEncoder`` by a stand-in whose mean is the
feature vector of the sentence the token names (the frozen encoder of a real run, without training one),
``LinearDiscriminator`` by their class with textvae's initial weights loaded (and the training batches and
step losses recorded), ``test`` by theirs recording its result, ``create_exp_dir`` by an in-memory log.

textvae's ``train_linear`` runs twice per seed: as ``textvae probe classify`` runs it (10 logits, its own length
buckets and generator: the trajectory and accuracy are compared), on their batches in textvae's order, and in
the authors' mode (their batches in their order via ``batch_order``: every step compared). ``their_orders``:
how many of their epoch orders ``RandomState(seed)`` reproduces once it also makes their test()'s draws.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import AUTHORS_COMMIT, patched_copy  # noqa: E402
from bench_common import cpu_model, emit_json  # noqa: E402
from fidelity_probes import features  # noqa: E402

N_TRAIN, NCLUSTER, SEEDS = 500, 10, (783435, 101, 202)
SPLITS = ("train", "val", "test")


def linear_data(folder: Path) -> dict:
    """Features, labels and sentence lengths of the three splits; writes the corpus and vocabulary their script
    reads. Sentence i of split s is the token ``s i`` (e.g. ``val7``) and ``length - 1`` tokens ``x``."""
    f = features(folder)
    rng = np.random.RandomState(1)
    words = ["<pad>", "<s>", "</s>", "<unk>", "x"]
    out = {}
    for split in SPLITS:
        x, y = f[split]
        if split == "train":
            x, y = x[:N_TRAIN], y[:N_TRAIN]
        lengths = rng.randint(1, 9, len(y))
        base = len(words)
        words += [f"{split}{i}" for i in range(len(y))]
        lines = [f"{lab}\t{split}{i}" + " x" * (n - 1) + "\n" for i, (lab, n) in enumerate(zip(y, lengths))]
        (folder / f"{split}.txt").write_text("".join(lines))
        out[split] = {"x": x.astype(np.float32), "y": y.astype(np.int64), "lengths": lengths, "base": base}
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    out["vocab_size"] = len(words)
    return out


def import_text_ss_ft(patched: Path):
    sys.path.insert(0, str(patched))
    import text_ss_ft
    if not str(Path(text_ss_ft.__file__).resolve()).startswith(str(patched.resolve())):
        raise SystemExit(f"text_ss_ft imported from {text_ss_ft.__file__}, not from the authors' copy")
    return text_ss_ft


def authors_run(T, data: dict, folder: Path, seed: int, init: dict) -> dict:
    """text_ss_ft.main() as written, with the four names replaced (module docstring); what it computed."""
    import torch
    from torch import nn
    table = torch.zeros(data["vocab_size"], data["train"]["x"].shape[1])
    for split in SPLITS:
        d = data[split]
        table[d["base"]:d["base"] + len(d["y"])] = torch.from_numpy(d["x"])
    rec = {"batches": [], "steps": [], "events": []}

    class StandIn(nn.Module):            # the frozen encoder: (mean, logvar) of the sentence a batch row names
        def __init__(self, *_):
            super().__init__()
            self.register_buffer("table", table)

        def forward(self, batch):
            if self.training:
                rec["batches"].append((batch[:, 1] - data["train"]["base"]).tolist())
            mu = self.table[batch[:, 1]]
            return mu, torch.zeros_like(mu)

    class Recorded(T.LinearDiscriminator):
        def __init__(self, args, encoder):
            super().__init__(args, encoder)
            self.linear.load_state_dict(init)
            rec["model"] = self

        def get_performance(self, batch_data, batch_labels):
            loss, correct = super().get_performance(batch_data, batch_labels)
            if self.training:
                rec["steps"].append((loss.sum() / loss.size(0)).item())   # the loss their step minimises
            return loss, correct

    def test(*a, **k):
        loss, acc = orig["test"](*a, **k)
        rec["events"].append((a[3], float(loss), 100.0 * float(acc)))
        return loss, acc

    exp = folder / f"exp_{seed}"
    exp.mkdir(exist_ok=True)
    argv = ["text_ss_ft.py", "--dataset", "short_yelp", "--num_label", str(N_TRAIN), "--freeze_enc",
            "--seed", str(seed), "--exp_dir", str(exp)]
    saved = sys.argv
    try:
        sys.argv = argv
        args = T.init_config()
    finally:
        sys.argv = saved
    args.train_data, args.val_data, args.test_data = (str(folder / f"{s}.txt") for s in SPLITS)
    args.vocab_file, args.nz = str(folder / "vocab.txt"), table.size(1)
    names = {"GaussianLSTMEncoder": StandIn, "LinearDiscriminator": Recorded, "test": test,
             "create_exp_dir": lambda *a, **k: (lambda s: rec["events"].append(("log", s)))}
    orig = {k: getattr(T, k) for k in names}
    try:
        for k, v in names.items():
            setattr(T, k, v)
        with contextlib.redirect_stdout(io.StringIO()):
            T.main(args)
    finally:
        for k, v in orig.items():
            setattr(T, k, v)
    return summarise_authors(rec, args)


def summarise_authors(rec: dict, args) -> dict:
    """Their epochs (validation CE and accuracy, the lr of the epoch, a decay after it), batches and result."""
    epochs, lr = [], None
    for ev in rec["events"]:
        if ev[0] == "log" and ev[1].startswith("lr "):
            lr = float(ev[1].split()[1])
        elif ev[0] == "VAL":
            epochs.append({"val_loss": ev[1], "val_acc": ev[2], "lr": lr, "decay": False})
        elif ev[0] == "log" and ev[1].startswith("new lr"):
            epochs[-1]["decay"] = True
    per_epoch = len(rec["batches"]) // len(epochs)
    batches = [rec["batches"][e * per_epoch:(e + 1) * per_epoch] for e in range(len(epochs))]
    final_test = [ev for ev in rec["events"] if ev[0] == "TEST"][-1]
    lin = rec["model"].linear.state_dict()
    return {"steps": rec["steps"], "epochs": epochs, "batches": batches, "test_accuracy": final_test[2],
            "final": {k: v.clone() for k, v in lin.items()}, "ncluster": args.ncluster,
            "settings": {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
                         "freeze_enc": args.freeze_enc, "opt": args.opt, "momentum": args.momentum}}


def compare(au: dict, tv: dict, trace: dict) -> dict:
    """Per step, per epoch and final differences between the authors' run and one textvae run."""
    n = min(len(au["steps"]), len(trace["steps"]))
    d_step = np.abs(np.subtract(au["steps"][:n], trace["steps"][:n]))
    m = min(len(au["epochs"]), len(trace["epochs"]))
    ea, et = au["epochs"][:m], trace["epochs"][:m]
    first = next((i for i, v in enumerate(d_step) if v > 1e-5), None)
    return {"steps": [len(au["steps"]), len(trace["steps"])], "max_abs_step_loss": float(d_step.max(initial=0)),
            "first_step_apart": first,
            "epochs": [len(au["epochs"]), len(trace["epochs"])],
            "max_abs_val_loss": max(abs(a["val_loss"] - t["val_loss"]) for a, t in zip(ea, et)),
            "val_acc_equal": all(abs(a["val_acc"] - t["val_acc"]) < 1e-9 for a, t in zip(ea, et)),
            "decay_epochs": [[i for i, e in enumerate(au["epochs"]) if e["decay"]],
                             [i for i, e in enumerate(trace["epochs"]) if e["decay"]]],
            "lrs_equal": [a["lr"] for a in au["epochs"]] == [t["lr"] for t in trace["epochs"]],
            "test_accuracy": [au["test_accuracy"], tv["test_accuracy"]],
            "max_abs_weight": max(float((au["final"][k] - trace["final"][k]).abs().max()) for k in ("weight", "bias"))}


def textvae_run(data: dict, seed: int, batches=None) -> tuple[dict, dict]:
    """train_linear as the pipeline calls it (n_logits 10, its length buckets and generator), or on given batches:
    ``batches(epoch)`` → the index batches of the epoch in order."""
    from textvae.probing.classifiers import train_linear
    tr, va, te = (data[s] for s in SPLITS)
    trace: dict = {}
    res = train_linear(tr["x"], tr["y"], va["x"], va["y"], te["x"], te["y"], n_logits=NCLUSTER,
                       train_lengths=list(tr["lengths"]), seed=seed, batch_order=batches, trace=trace)
    return res, trace


def replayed(au_batches: list):
    """The authors' batches in their order, epoch by epoch."""
    def order(epoch):
        if epoch >= len(au_batches):
            raise RuntimeError(f"textvae trains an epoch {epoch + 1} the authors' run did not")
        return au_batches[epoch]
    return order


def their_batches(T, folder: Path, split: str, batch_size: int, base: int) -> list:
    """Their ``create_data_batch_labels`` batches of a split, in the order it makes them, as sentence indices."""
    vocab = T.VocabEntry({w: i for i, w in enumerate((folder / "vocab.txt").read_text().split())})
    made, _ = T.MonoTextData(str(folder / f"{split}.txt"), label=True, vocab=vocab).create_data_batch_labels(
        batch_size=batch_size, device="cpu", batch_first=True)
    return [(b[:, 1] - base).tolist() for b in made]


def their_sets_own_order(T, folder: Path, data: dict, seed: int):
    """Their batches drawn in textvae's order (a permutation from RandomState(seed) per epoch): isolates the
    batch order from the batch composition."""
    sets = their_batches(T, folder, "train", 16, data["train"]["base"])
    rng = np.random.RandomState(seed)
    return lambda epoch: [sets[k] for k in rng.permutation(len(sets))]


def their_orders_explained(T, folder: Path, data: dict, seed: int, au: dict) -> dict:
    """How many of their epoch orders ``RandomState(seed)`` reproduces when it also makes the draws of their
    test(): a permutation of the validation batches every epoch, of the test batches every test_nepoch (5)."""
    sets = their_batches(T, folder, "train", 16, data["train"]["base"])
    n_val, n_test = (len(their_batches(T, folder, s, 128, data[s]["base"])) for s in ("val", "test"))
    rng = np.random.RandomState(seed)
    same = 0
    for epoch, batches in enumerate(au["batches"]):
        same += [sets[k] for k in rng.permutation(len(sets))] == batches
        rng.permutation(n_val)
        if epoch % 5 == 0:
            rng.permutation(n_test)
    return {"epochs": len(au["batches"]), "reproduced": int(same), "val_batches": n_val, "test_batches": n_test}


def same_batches(au_batches: list, lengths) -> dict:
    """Do their batches hold the sentences textvae's length buckets hold (as sets, in any order)?"""
    from textvae.probing.classifiers import length_buckets
    ours = {tuple(sorted(b.tolist())) for b in length_buckets(lengths, 16)}
    theirs = {tuple(sorted(b)) for b in au_batches[0]}
    return {"batches": [len(theirs), len(ours)], "same_sets": sorted(ours) == sorted(theirs),
            "batches_differing": len(theirs - ours)}


def fixture(data: dict, seed: int, au: dict, init: dict) -> dict:
    """What tests/test_fidelity.py replays without the authors' code (one seed): their batches (fixed sets, one
    order per epoch), step losses, epochs, test accuracy and final weights, and the initial weights both got."""
    import datetime

    import torch
    sets = sorted(au["batches"][0], key=lambda b: (int(data["train"]["lengths"][b[0]]), b))
    index = {tuple(b): i for i, b in enumerate(sets)}
    return {"meta": {"command": "python bench/fidelity_linear.py --authors LI --fixture tests/data/fidelity_linear.json",
                     "authors_commit": AUTHORS_COMMIT, "cpu": cpu_model(), "torch": torch.__version__,
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "seed": seed, "n_logits": NCLUSTER, "train_examples": N_TRAIN,
                     "data": "bench/fidelity_linear.linear_data (bench/fidelity_probes.features, lengths seed 1)"},
            "batches": sets, "orders": [[index[tuple(b)] for b in ep] for ep in au["batches"]],
            "steps": au["steps"], "epochs": au["epochs"], "test_accuracy": au["test_accuracy"],
            "init": {k: v.tolist() for k, v in init.items()}, "final": {k: v.tolist() for k, v in au["final"].items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--json")
    ap.add_argument("--fixture", help="write the first seed's authors' run here (tests/data/fidelity_linear.json)")
    a = ap.parse_args()
    if not a.authors:
        raise SystemExit("--authors DIR (or $TEXTVAE_AUTHORS_REPO): a checkout of bohanli/vae-pretraining-encoder")
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO / "src"))
    sys.dont_write_bytecode = True
    work = Path(tempfile.mkdtemp(prefix="fidelity_linear_"))
    T = import_text_ss_ft(_copy(Path(a.authors), work / "authors"))
    data = linear_data(work)
    rows = []
    for seed in a.seeds:
        own, own_trace = textvae_run(data, seed)                   # also gives textvae's initial weights
        au = authors_run(T, data, work, seed, own_trace["init"])
        ours, trace = textvae_run(data, seed, replayed(au["batches"]))
        mixed, mixed_trace = textvae_run(data, seed, their_sets_own_order(T, work, data, seed))
        rows.append({"seed": seed, "authors_mode": compare(au, ours, trace),
                     "pipeline_mode": compare(au, own, own_trace),
                     "their_batches_textvae_order": compare(au, mixed, mixed_trace),
                     "batch_sets": same_batches(au["batches"], list(data["train"]["lengths"])),
                     "their_orders": their_orders_explained(T, work, data, seed, au),
                     "init_equal": all(torch.equal(own_trace["init"][k], trace["init"][k]) for k in ("weight", "bias")),
                     "authors_settings": au["settings"], "ncluster": au["ncluster"]})
        print(json.dumps(rows[-1]["authors_mode"]), file=sys.stderr, flush=True)
        if a.fixture and seed == a.seeds[0]:
            Path(a.fixture).write_text(json.dumps(fixture(data, seed, au, own_trace["init"]),
                                                   separators=(",", ":")) + "\n")
    return emit_json({"authors_commit": AUTHORS_COMMIT, "machine": cpu_model(), "rows": rows}, a.json)


def _copy(src: Path, dest: Path) -> Path:
    patched_copy(src, dest)          # the CPU patches touch utils.py's calc_mi only, which text_ss_ft never calls
    return dest


if __name__ == "__main__":
    sys.exit(main())
