"""bench/bench_authors.py's workers, each run in a fresh process (``--worker SPEC``): preparation and checks,
training steps, IW-NLL, the test pass; and the load accounting of their timing windows."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import (LAM, LOOP, PTB_SIZES, REPO, authors_args, authors_argv, authors_setup,  # noqa: E402
                              authors_train_step, import_authors, load_into_textvae, same_z_checks)

# ==========================================================================================================
# Load accounting
# ==========================================================================================================

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat() -> tuple[float, float]:
    """(busy, steal) seconds of the whole machine from /proc/stat (busy: user+nice+system+irq+softirq)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / _HZ, (v[7] if len(v) > 7 else 0) / _HZ
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")


def _self_cpu() -> float:
    """utime + stime of this process (all its threads) from /proc/self/stat, seconds."""
    try:
        with open("/proc/self/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _HZ
    except (OSError, ValueError, IndexError):
        t = os.times()
        return t.user + t.system


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return list(os.getloadavg())


class Window:
    """One timed window: wall seconds, load average at both ends, CPU used by other processes (cores)."""

    def __init__(self):
        self.load0 = loadavg()
        self.busy0, self.steal0 = _proc_stat()
        self.self0 = _self_cpu()
        self.t0 = time.perf_counter()

    def stop(self, **extra) -> dict:
        sec = time.perf_counter() - self.t0
        busy, steal = _proc_stat()
        own = _self_cpu() - self.self0
        other = max(0.0, (busy - self.busy0) - own)
        return {"seconds": sec, "own_cpu_s": round(own, 3), "other_cpu_s": round(other, 3),
                "other_cores": round(other / sec, 4) if sec > 0 else None,
                "steal_cores": round((steal - self.steal0) / sec, 4) if sec > 0 else None,
                "load_before": self.load0, "load_after": loadavg(), **extra}


def merge_windows(ws: list[dict]) -> dict:
    sec = sum(w["seconds"] for w in ws)
    other = sum(w["other_cpu_s"] for w in ws)
    return {"seconds": sec, "other_cpu_s": round(other, 3), "other_cores": round(other / sec, 4) if sec else None,
            "max_window_other_cores": max((w["other_cores"] or 0) for w in ws) if ws else None}


# ==========================================================================================================
# Workers (each in a fresh process)
# ==========================================================================================================

def _torch(threads: int):
    import torch
    torch.set_num_threads(threads)
    return torch


def _paths(spec: dict) -> tuple[str, str, str]:
    ptb = Path(spec["ptb"])
    return str(ptb / "ptb.train.txt"), str(ptb / "ptb.valid.txt"), spec["test_file"]


def worker_prep(spec: dict) -> dict:
    """Untimed: the authors' initial weights (their init, their seed), the same weights as a textvae
    checkpoint, and the checks that both sides see the same data and compute the same model."""
    torch = _torch(spec["threads"])
    from textvae.modeling.checkpoint import atomic_save, check_bf16, model_payload
    from textvae.corpora.data import Vocab, make_batches, read_corpus
    from textvae.core.errors import ConfigError
    from textvae.modeling.model import VAE, ModelConfig
    A = import_authors(Path(spec["patched"]))
    train_f, valid_f, test_f = _paths(spec)
    args = authors_args(A, [], train_f, valid_f, test_f)
    st = authors_setup(A, args, with_optim=False)
    vae, vocab = st["vae"], st["vocab"]
    torch.save(vae.state_dict(), spec["init_path"])
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                 "authors_config": str(Path(sys.modules["config.config_ptb"].__file__)),
                 "authors_args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}}

    tv_train = read_corpus(train_f)
    tv_vocab = Vocab.build(tv_train.sentences)
    theirs = [vocab.id2word(i) for i in range(len(vocab))]
    out["vocab"] = {"authors": len(vocab), "textvae": len(tv_vocab), "identical": tv_vocab.itos == theirs,
                    "last_type": theirs[-1]}
    tv = VAE(ModelConfig(vocab_size=len(tv_vocab), **PTB_SIZES))
    load_into_textvae(tv, vae.state_dict())
    atomic_save(model_payload(tv, tv_vocab, run={"method": "ae", "source": "the authors' initialisation"}),
                spec["tv_ckpt"])

    # the same exact-length batches (shapes) on both sides, in the same order
    a_shapes = [list(b.shape) for b in st["train_data"].create_data_batch(batch_size=args.batch_size,
                                                                           device="cpu", batch_first=True)]
    tv_b = make_batches([tv_vocab.encode(s) for s in tv_train.sentences], 32)
    tv_shapes = [list(t.shape) for t in tv_b.tensors]
    out["batches"] = {"authors": len(a_shapes), "textvae": len(tv_shapes), "same_shapes": a_shapes == tv_shapes,
                      "plan_shapes_match": all(a_shapes[k] == s for k, s in zip(spec["batch_ids"],
                                                                                 spec["batch_shapes"]))}
    # the same token ids for the IW sentences and the test-pass sentences
    a_test = A.D.MonoTextData(test_f, label=args.label, vocab=vocab)
    tv_test = read_corpus(test_f)
    same_ids = len(a_test.data) == len(tv_test.sentences)
    picks = spec["iw_ids"] + list(range(min(50, len(a_test.data))))
    for i in picks:
        a_ids = a_test._to_tensor([a_test.data[i]], True, "cpu")[0][0].tolist()
        same_ids &= a_ids == tv_vocab.encode(tv_test.sentences[i])
    out["test_ids_identical"] = bool(same_ids)
    out["test_sentences"] = len(a_test.data)

    xs = [a_test._to_tensor([a_test.data[i]], True, "cpu")[0] for i in spec["iw_ids"] + spec["extra_check_ids"]]
    out["same_z_checks"] = same_z_checks(vae, tv, xs)
    try:
        check_bf16(torch.device("cpu"))
        out["bf16"] = None
    except ConfigError as exc:
        out["bf16"] = str(exc)
    return out


def worker_train(spec: dict) -> dict:
    _torch(spec["threads"])
    workload, side, precision = spec["workload"], spec["side"], spec["precision"]
    ids, warm = spec["batch_ids"], spec["warmup_ids"]
    per_batch = []
    if side == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv(workload, spec["init_path"]), train_f, valid_f, test_f)
        st = authors_setup(A, args)
        shapes = [list(st["train_data_batch"][k].shape) for k in ids]

        def step(k):
            authors_train_step(A, args, st, k)
            b = st["train_data_batch"][k]
            return b.size(0), b.size(0) * (b.size(1) - 1)
        info = {"loop": f"text_anneal_fb.py lines {LOOP['first']}-{LOOP['last']} (authors_train_step)",
                "fb": args.fb, "target_kl": args.target_kl, "kl_start": args.kl_start, "lr": args.lr}
    else:
        sys.path.insert(0, str(REPO / "bench"))
        import inspect

        from bench_train import shared_ptb
        from textvae.training.trainer import TrainConfig, Trainer
        ours = workload == "train_ours"
        cfg = TrainConfig(method="ours" if ours else "vae", lam=LAM if ours else None,
                          init_from=spec["tv_ckpt"] if ours else None, precision=precision, progress=False,
                          device="cpu", lr=1.0)
        t = Trainer(cfg, shared_ptb(), tempfile.mkdtemp(prefix="bench_authors_run_"), PTB_SIZES)
        t.model.train()
        shapes = [list(t.train_batches.tensors[k].shape) for k in ids]
        all_params = list(t.model.parameters())
        acc = {"tot_loss": 0.0, "tot_rec": 0.0, "tot_kl": 0.0, "n": 0}
        src, first = inspect.getsourcelines(Trainer.train_epoch)

        def step(k):
            # Trainer.train_epoch's loop body (non-aggressive branch), statement for statement
            st = t.state
            x = t.train_batches.tensors[k]
            st["step"] += 1
            beta = t.beta(st["step"])
            loss, rec, kl = t.batch_loss(x, beta)
            mean = loss.mean()
            t._check_finite(mean)
            t._step(mean, t.optimizers, all_params)
            b = x.size(0)
            acc["tot_loss"] += loss.detach().sum().item()
            acc["tot_rec"] += rec.detach().sum().item()
            acc["tot_kl"] += kl.detach().sum().item()
            acc["n"] += b
            return b, b * (x.size(1) - 1)
        info = {"loop": f"textvae.training.trainer.Trainer.train_epoch (src/textvae/training/trainer.py lines {first}-"
                        f"{first + len(src) - 1})", "method": cfg.method, "lam": cfg.lam, "lr": t.lr0}
    if shapes != spec["batch_shapes"]:
        raise SystemExit(f"batch shapes differ from the plan: {shapes[:5]} vs {spec['batch_shapes'][:5]}")
    for k in warm:
        step(k)
    w = Window()
    sents = toks = 0
    for k in ids:
        t0 = time.perf_counter()
        s, n = step(k)
        per_batch.append([k, round(time.perf_counter() - t0, 5)])
        sents += s
        toks += n
    win = w.stop()
    return {**info, "window": win, "sentences": sents, "tokens": toks, "tokens_per_s": toks / win["seconds"],
            "sentences_per_s": sents / win["seconds"], "per_batch_s": per_batch}


def worker_iw(spec: dict) -> dict:
    torch = _torch(spec["threads"])
    K, ids, seed = spec["K"], spec["iw_ids"], spec["seed"]
    ns = min(100, K)          # calc_iwnll's default chunk (ns=100); K below 100 only in --quick
    windows, nll, toks = [], [], []
    if spec["side"] == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv("iw", spec["init_path"], K), train_f, valid_f, test_f)
        st = authors_setup(A, args, with_optim=False)
        vae = st["vae"]
        vae.load_state_dict(torch.load(spec["init_path"]))      # as --eval does (line 220)
        vae.eval()
        test_data = A.D.MonoTextData(args.test_data, label=args.label, vocab=st["vocab"])
        # the [1, T] tensors create_data_batch(batch_size=1) gives (line 232), via the function it uses
        xs = [test_data._to_tensor([test_data.data[i]], True, st["device"])[0] for i in ids]
        torch.manual_seed(seed)
        report_nll_loss = 0
        with torch.no_grad():
            vae.nll_iw(min(xs, key=lambda x: x.size(1)), nsamples=ns, ns=ns)    # warm-up (untimed)
            for x in xs:
                w = Window()
                loss = vae.nll_iw(x, nsamples=args.iw_nsamples, ns=ns)           # utils.py line 67
                report_nll_loss += loss.sum().item()                              # utils.py line 69
                windows.append(w.stop())
                nll.append(float(loss.sum()))
                toks.append(x.size(1) - 1)
        info = {"call": "VAE.nll_iw per sentence (calc_iwnll's loop body, utils.py lines 67-69)", "ns": ns}
    else:
        from textvae.modeling.checkpoint import load_model
        from textvae.corpora.data import read_corpus
        from textvae.evaluation.fast_vae import FastVAE, iw_log_likelihood
        model, vocab, _ = load_model(spec["tv_ckpt"])
        sents = read_corpus(spec["test_file"]).sentences
        exs = [vocab.encode(sents[i]) for i in ids]
        t0 = time.perf_counter()
        fast = FastVAE(model, "cpu", spec["precision"])
        build = time.perf_counter() - t0
        iw_log_likelihood(fast, [min(exs, key=len)], min(K, 100), seed=seed)     # warm-up (untimed)
        for ex in exs:
            w = Window()
            lp = iw_log_likelihood(fast, [ex], K, seed=seed)
            windows.append(w.stop())
            nll.append(-float(lp[0]))
            toks.append(len(ex) - 1)
        info = {"call": "textvae.evaluation.fast_vae.iw_log_likelihood(FastVAE, [sentence], K) per sentence",
                "fastvae_build_s": round(build, 4)}
    m = merge_windows(windows)
    return {**info, "K": K, "window": m, "windows": windows, "nll": nll, "tokens_per_sentence": toks,
            "sentences": len(ids), "tokens": sum(toks), "tokens_per_s": sum(toks) / m["seconds"],
            "sentences_per_s": len(ids) / m["seconds"]}


def worker_test(spec: dict) -> dict:
    torch = _torch(spec["threads"])
    if spec["side"] == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv("test", spec["init_path"]), train_f, valid_f, test_f)
        st = authors_setup(A, args, with_optim=False)
        vae, device = st["vae"], st["device"]
        test_data = A.D.MonoTextData(args.test_data, label=args.label, vocab=st["vocab"])
        vae.load_state_dict(torch.load(spec["init_path"]))      # line 220
        vae.eval()
        with torch.no_grad():
            w = Window()
            test_data_batch = test_data.create_data_batch(batch_size=args.batch_size, device=device,
                                                          batch_first=True)          # line 223
            t1 = time.perf_counter()
            test_loss, nll, kl, ppl, mi = A.T.test(vae, test_data_batch, "TEST", args)   # line 227
            t2 = time.perf_counter()
            au, au_var = A.U.calc_au(vae, test_data_batch)                          # line 228
            t3 = time.perf_counter()
            win = w.stop()
        n = len(test_data.data)
        return {"call": "text_anneal_fb.py --eval branch, lines 222-228: create_data_batch, test(), calc_au",
                "window": win, "sentences": n, "seconds": win["seconds"], "seconds_without_iw": win["seconds"],
                "parts_s": {"create_data_batch": t1 - w.t0, "test": t2 - t1, "calc_au": t3 - t2},
                "metrics": {"neg_elbo": nll, "kl": kl, "rec": nll - kl, "mi": float(mi), "au": int(au),
                            "ppl_elbo": float(ppl)}}
    from textvae.modeling.checkpoint import load_model
    from textvae.corpora.data import read_corpus
    from textvae.evaluation.evaluate import evaluate_model
    model, vocab, _ = load_model(spec["tv_ckpt"])
    sents = read_corpus(spec["test_file"]).sentences
    w = Window()
    res = evaluate_model(model, vocab, sents, iw_samples=0, precision=spec["precision"], device="cpu")
    win = w.stop()
    return {"call": "textvae.evaluation.evaluate.evaluate_model(model, vocab, sentences, iw_samples=0)", "window": win,
            "sentences": len(sents), "seconds": win["seconds"], "seconds_without_iw": win["seconds"],
            "evaluate_model_seconds": res["seconds"],
            "metrics": {"neg_elbo": res["neg_elbo"], "kl": res["kl"], "rec": res["rec"], "mi": res["mi_li"],
                        "mi_he": res["mi_he"], "au": res["au"], "ppl_elbo": res["elbo_ppl"]}}


WORKERS = {"prep": worker_prep, "train_vae": worker_train, "train_ours": worker_train, "iw": worker_iw,
           "test": worker_test}


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    res = WORKERS[spec["workload"]](spec)
    res["process_seconds"] = round(time.perf_counter() - t0, 3)
    Path(spec["out"]).write_text(json.dumps(res, indent=1))
    return 0
