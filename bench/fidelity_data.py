"""The data path and the evaluation against the authors' code (docs/fidelity.md, "Data path", "Evaluation").

    python bench/fidelity_data.py --authors LI_DIR [--ptb ../shared/data/ptb] [--json out.json]

1. Data path, on the whole PTB: their ``MonoTextData`` (train, valid, test; vocabulary from train) and
   ``create_data_batch(batch_size=32)`` against textvae's ``Vocab.build`` / ``make_batches``: the vocabulary id
   for id, every sentence's framed ids, and the exact-length batches (count, shapes, composition).
2. Evaluation on a trained checkpoint: the small configuration's "Ours" run (fidelity_replay.py, 90 steps from
   the pretrained-encoder recipe) evaluated on its 64 held-out sentences by ``textvae.evaluation.evaluate.evaluate_model``
   (K = 1000) and by their ``test()``, ``calc_au`` and ``calc_iwnll`` (K = 1000, ns = 100) on the same weights.
The authors' side runs in a subprocess (their top-level module names).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import SHARED, patched_copy  # noqa: E402
from bench_common import emit_json  # noqa: E402

SEEDS = (0, 1, 2)


def batch_report(theirs: list, ours: list) -> dict:
    a = [b.tolist() for b in theirs]
    same_rows = sum(1 for x, y in zip(a, ours) if x == y)
    same_set = sum(1 for x, y in zip(a, ours) if sorted(x) == sorted(y))
    return {"batches": [len(a), len(ours)], "same_shapes": [list(map(len, (x, x[0]))) for x in a] ==
            [list(map(len, (y, y[0]))) for y in ours], "identical": same_rows,
            "same_sentences_other_row_order": same_set - same_rows, "other_composition": len(a) - same_set,
            "sentences_in_other_compositions": sum(len(x) for x, y in zip(a, ours) if sorted(x) != sorted(y))}


def worker_data(patched: str, ptb: str) -> dict:
    from authors_checkout import import_authors
    from textvae.corpora.data import Vocab, make_batches, read_corpus
    A = import_authors(Path(patched))
    files = {s: str(Path(ptb) / f"ptb.{s}.txt") for s in ("train", "valid", "test")}
    train = A.D.MonoTextData(files["train"], label=False)
    vocab = train.vocab
    tv_vocab = Vocab.build(read_corpus(files["train"]).sentences)
    out = {"vocab": {"authors": len(vocab), "textvae": len(tv_vocab),
                     "identical": tv_vocab.itos == [vocab.id2word(i) for i in range(len(vocab))]}}
    for s, f in files.items():
        d = train if s == "train" else A.D.MonoTextData(f, label=False, vocab=vocab)
        ex = [tv_vocab.encode(x) for x in read_corpus(f).sentences]
        theirs = [d._to_tensor([x], True, "cpu")[0][0].tolist() for x in d.data]
        ours = make_batches(ex, 32)
        out[s] = {"sentences": [len(d.data), len(ex)], "ids_identical": theirs == ex, "dropped": d.dropped,
                  **batch_report(d.create_data_batch(batch_size=32, device="cpu", batch_first=True),
                                 [t.tolist() for t in ours.tensors])}
    return out


def worker_eval(patched: str, data: str, weights: str) -> dict:
    import numpy as np
    import torch
    from fidelity_authors import load_modules, setup, to_authors
    mods = load_modules(Path(patched), "li")
    mod, D, M, U = mods["text_anneal_fb.py"]
    st = setup(mod, D, M, U, "ours", Path(data), Path(tempfile.mkdtemp()))
    vae, args = st["model"], st["args"]
    vae.load_state_dict(to_authors(torch.load(weights), vae.state_dict(), False))
    vae.eval()
    test = D.MonoTextData(args.test_data, label=False, vocab=vae.decoder.vocab)
    runs = []
    for seed in SEEDS:                       # their evaluation draws from the global generators
        torch.manual_seed(seed)
        np.random.seed(seed)
        with torch.no_grad():
            tb = test.create_data_batch(batch_size=32, device="cpu", batch_first=True)
            loss, nll, kl, ppl, mi = mod.test(vae, tb, "TEST", args)        # text_anneal_fb.py lines 222-228
            au, _ = U.calc_au(vae, tb)
            args.iw_nsamples = 1000
            iw, iw_ppl = U.calc_iwnll(vae, test.create_data_batch(batch_size=1, device="cpu", batch_first=True),
                                      args)                                 # lines 233-235 (ns = 100)
        runs.append({"seed": seed, "neg_elbo": nll, "kl": kl, "rec": nll - kl, "elbo_ppl": float(ppl),
                     "mi": float(mi), "au": int(au), "iw_nll": float(iw), "iw_ppl": float(iw_ppl)})
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"))
    ap.add_argument("--ptb", default=str(SHARED / "ptb"))
    ap.add_argument("--json")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        kind, *rest = a.worker
        res = worker_data(*rest) if kind == "data" else worker_eval(*rest)
        print("RESULT " + json.dumps(res))
        return 0
    import torch
    torch.set_num_threads(1)
    from fidelity_replay import TRAIN_LINES, replay, write_subset
    from textvae.corpora.data import read_corpus
    from textvae.evaluation.evaluate import evaluate_model
    from textvae.modeling.model import VAE, ModelConfig
    from textvae.corpora.data import Vocab
    work = Path(tempfile.mkdtemp(prefix="fidelity_data_"))
    patched = work / "li_copy"
    patched_copy(Path(a.authors), patched)

    def run(*args):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *map(str, args)],
                           capture_output=True, text=True, env=env, cwd=str(work))
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        return json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    out = {"data": run("data", patched, a.ptb)}
    data = write_subset(Path(a.ptb), work / "ptb_main", TRAIN_LINES)
    r = replay("ours", data, work / "ours")
    torch.save(r["final_state"], work / "ours.pt")
    out["authors_eval"] = run("eval", patched, data, work / "ours.pt")
    sents = read_corpus(data / "train.txt").sentences
    vocab = Vocab.build(sents)
    m = VAE(ModelConfig.from_dict({**r["config"], "vocab_size": len(vocab), "enc_emb": 16, "dec_emb": 16,
                                    "enc_hidden": 32, "dec_hidden": 32, "nz": 8}))
    m.load_state_dict(r["final_state"])
    out["textvae_eval"] = []
    for seed in SEEDS:
        ev = evaluate_model(m, vocab, read_corpus(data / "test.txt").sentences, iw_samples=1000, seed=seed)
        out["textvae_eval"].append({"seed": seed, **{k: ev[k] for k in ("neg_elbo", "kl", "rec", "elbo_ppl", "mi_li",
                                                                       "mi_he", "au", "nll", "ppl")}})
    return emit_json(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
