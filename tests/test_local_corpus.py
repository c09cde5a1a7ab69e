"""Your own corpus through the pipeline (README: Your own corpus): a folder of train.txt, valid.txt, test.txt
(plain or label<TAB>text) named by `source:` in params.yaml is prepared, checked (one line naming the file and
the line for each kind of fault) and recorded (sha256 of each file), and every table, probe and claim runs on it;
`prepare: {examples: [...], seed: S}` downsamples any corpus."""
from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest

from textvae.core.errors import ConfigError, DataError
from textvae.corpora import prepare as P
from textvae.plan import pipeline
from test_pipeline import (copy_pipeline, edit_params, job_stats, needs_snakemake, run, snakemake,
                           assert_reports_hold_numbers)

WORDS = {"pos": "good great fine nice tasty friendly", "neg": "bad awful rude cold slow dirty"}
COMMON = "the food was and service staff place very".split()


def make_corpus(folder: Path, sizes=(300, 60, 60), seed: int = 0, labelled: bool = True) -> Path:
    """A small labelled corpus: each sentence mixes common words with words of its label."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), sizes):
        lines = []
        for _ in range(n):
            label = rng.choice(sorted(WORDS))
            words = [rng.choice(COMMON) for _ in range(rng.randint(3, 8))] + rng.sample(WORDS[label].split(), 2)
            rng.shuffle(words)
            lines.append(f"{label}\t{' '.join(words)}" if labelled else " ".join(words))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_mine(params: dict, source: str = "mycorpus", lams=(3,)) -> None:
    """params.yaml with one experiment on your own corpus `mine`, every setting as small as a test needs."""
    params["datasets"]["mine"] = {
        "source": source,
        "sizes": {"enc_emb": 8, "dec_emb": 8, "enc_hidden": 16, "dec_hidden": 16, "nz": 4},
        "training": {"max_epochs": 1, "warm_up": 1, "min_epoch": 1, "patience": 1,
                     "methods": {"aggressive": {"max_train": 100}}},
        "evaluation": {"iw_samples": 2},
        "probing": {"bleu": {"max_len": 20}, "smoothness": {"pairs": 100},
                    "interpolate": {"pairs_interp": 1, "points": 3, "max_len": 20},
                    "copy": {"samples": 3, "max_len": 20}, "classify": {"labels": [50], "max_epochs": 1}},
    }
    params["experiments"] = {"mine": {"dataset": "mine", "lams": list(lams)}}


def prepare_cli(tmp_path: Path, source: Path, *extra: str):
    """`textvae data prepare mine --source SOURCE` in this process: (exit status, stderr lines)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = P.main(["data", "prepare", "mine", "--source", str(source), "--out", str(tmp_path / "data" / "mine"),
                     *extra])
    return rc, err.getvalue().strip().splitlines()


# ----------------------------------------------------------------------------------------------------------
# textvae data prepare NAME --source DIR
# ----------------------------------------------------------------------------------------------------------

def test_local_corpus_is_prepared_and_recorded(tmp_path):
    import hashlib

    src = make_corpus(tmp_path / "mycorpus")
    rc, err = prepare_cli(tmp_path, src)
    assert rc == 0, err
    out = tmp_path / "data" / "mine"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["format"] == "labelled" and stats["source"] == {"kind": "local", "path": str(src.resolve())}
    for split in ("train", "valid", "test"):
        assert stats["files"][split]["sha256"] == hashlib.sha256((src / f"{split}.txt").read_bytes()).hexdigest()
        assert (out / f"{split}.txt").read_text() == (src / f"{split}.txt").read_text()
    from collections import Counter
    labels = Counter(line.split("\t")[0] for line in (src / "train.txt").read_text().splitlines())
    assert stats["splits"]["train"]["labels"] == dict(sorted(labels.items())) and len(labels) == 2
    # labelled: the classification probe's subsets, sampled from train (the folder has no train.N.txt)
    assert (out / "train.100.txt").is_file() and not (out / "train.500.txt").exists()
    # a plain corpus is plain, without subsets
    plain = make_corpus(tmp_path / "plain", labelled=False)
    stats = P.prepare("mine", tmp_path / "data" / "plain", source=plain)
    assert stats["format"] == "plain" and "subsets" not in stats


def test_labelled_subsets_of_the_folder_are_used(tmp_path):
    src = make_corpus(tmp_path / "mycorpus")
    (src / "train.20.txt").write_text("".join((src / "train.txt").read_text().splitlines(True)[:20]))
    stats = P.prepare("mine", tmp_path / "out", source=src)
    assert list(stats["subsets"]) == ["train.20"] and "train.20" in stats["files"]
    (src / "train.20.txt").write_text("pos\tgood\nneutral\tso so\n")
    with pytest.raises(DataError, match=r"train\.20\.txt:2: label 'neutral' does not occur in .*train\.txt"):
        P.prepare("mine", tmp_path / "out", source=src)


GOOD = "pos\tgood food\nneg\tbad food\n"


@pytest.mark.parametrize("file, text, where, what", [
    ("valid.txt", b"pos\tgood\n\xff\xfe\tbad\n", "valid.txt:2:", "not UTF-8"),
    ("valid.txt", b"pos\tgood\n\nneg\tbad\n", "valid.txt:2:", "empty line"),
    ("valid.txt", b"pos\tgood\n   \n", "valid.txt:2:", "empty line"),
    ("test.txt", b"pos\tgood\nneg bad food\n", "test.txt:2:", "no TAB between label and text"),
    ("test.txt", b"pos\tgood\nneg\tbad\tfood\n", "test.txt:2:", "2 TABs; one label per line"),
    ("test.txt", b"pos\tgood\nvery bad\tfood\n", "test.txt:2:", "empty or spaced label 'very bad'"),
    ("test.txt", b"pos\tgood\n\tfood\n", "test.txt:2:", "empty or spaced label ''"),
    ("test.txt", b"pos\tgood\nneg\t  \n", "test.txt:2:", "no text after the label"),
    ("train.txt", b"pos\tgood\npos\tfine\n", "train.txt:1:", "one label ('pos') in the whole file; classification "
                                                            "needs at least 2"),
    ("test.txt", b"pos\tgood\nmeh\tok\n", "test.txt:2:", "label 'meh' does not occur in"),
    ("test.txt", b"", "test.txt:1:", "empty file"),
])
def test_a_malformed_corpus_stops_with_one_line_naming_file_and_line(tmp_path, file, text, where, what):
    src = tmp_path / "mycorpus"
    src.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (src / name).write_text(GOOD)
    (src / file).write_bytes(text)
    rc, lines = prepare_cli(tmp_path, src)
    assert rc == 1 and len([ln for ln in lines if ln.startswith("error: ")]) == 1, lines
    assert f"{src / where}" in lines[-1] and what in lines[-1], lines
    assert not (tmp_path / "data" / "mine").exists()


def test_plain_corpus_with_a_label_and_missing_files(tmp_path):
    src = tmp_path / "mycorpus"
    src.mkdir()
    (src / "train.txt").write_text("good food\nbad food\n")
    (src / "valid.txt").write_text("nice place\npos\tgood\n")
    rc, err = prepare_cli(tmp_path, src)
    assert rc == 1 and f"{src}/valid.txt:2: a TAB in a plain corpus" in err[-1], err
    (src / "valid.txt").unlink()
    rc, err = prepare_cli(tmp_path, src)
    assert rc == 1 and f"{src}/valid.txt: file not found" in err[-1], err
    # the command line (one line on stderr, exit status 1); without --source a new name is refused
    proc = run([sys.executable, "-m", "textvae", "data", "prepare", "mine", "--out", str(tmp_path / "m")],
               tmp_path, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "mine: not a registered corpus" in lines[0] and "--source DIR" in lines[0], lines


# ----------------------------------------------------------------------------------------------------------
# downsampling: prepare: {examples: [train, valid, test], seed: S}
# ----------------------------------------------------------------------------------------------------------

def test_examples_downsample_a_local_and_a_registered_corpus(tmp_path):
    from dataclasses import replace

    from textvae.corpora import datasets as DS

    src = make_corpus(tmp_path / "mycorpus")
    stats = P.prepare("mine", tmp_path / "a", source=src, examples=(100, 20, 30), seed=5)
    assert [stats["splits"][s]["examples"] for s in ("train", "valid", "test")] == [100, 20, 30]
    assert stats["downsample"] == {"train": 100, "valid": 20, "test": 30} and stats["seed"] == 5
    lines = set((src / "train.txt").read_text().splitlines())
    sample = (tmp_path / "a" / "train.txt").read_text().splitlines()
    assert set(sample) <= lines
    # the seed chooses the sample
    again = P.prepare("mine", tmp_path / "b", source=src, examples=(100, 20, 30), seed=5)
    other = P.prepare("mine", tmp_path / "c", source=src, examples=(100, 20, 30), seed=6)
    assert (tmp_path / "b" / "train.txt").read_text() == "\n".join(sample) + "\n"
    assert (tmp_path / "c" / "train.txt").read_text() != "\n".join(sample) + "\n"
    assert again["splits"] == stats["splits"] and other["splits"] != stats["splits"]
    # a registered corpus (Yelp's file layout, read from a folder without pins)
    yelp = tmp_path / "yelpsrc"
    yelp.mkdir()
    for split in ("train", "valid", "test"):
        (yelp / f"short_yelp.{split}.txt").write_text((src / f"{split}.txt").read_text())
    var = DS.get_variant("yelp")
    var = replace(var, files=tuple(replace(f, pin=DS.NO_PIN) for f in var.files))
    stats = P.prepare("yelp", tmp_path / "y", source=yelp, spec=var, allow_unpinned=True, examples=(50, 10, 10))
    assert [stats["splits"][s]["examples"] for s in ("train", "valid", "test")] == [50, 10, 10]
    assert stats["downsample"] == {"train": 50, "valid": 10, "test": 10}


# ----------------------------------------------------------------------------------------------------------
# params.yaml → the plan
# ----------------------------------------------------------------------------------------------------------

def test_params_lines_make_a_local_dataset_and_its_jobs(params):
    tiny_mine(params)
    params["datasets"]["mine"]["prepare"] = {"examples": [200, 50, 50], "seed": 3}
    plan = pipeline.Plan(params)
    job = plan.data_job("mine")
    assert job.argv == ["textvae", "data", "prepare", "mine", "--out", "data/mine", "--source", "mycorpus",
                        "--examples", "200,50,50", "--seed", "3"]
    assert job.inputs == ["mycorpus/train.txt", "mycorpus/valid.txt", "mycorpus/test.txt"]
    exp = plan.experiment("mine")
    assert plan.table_names(exp) == list(pipeline.TABLE_KINDS)        # a missing folder: assumed labelled
    # `corpus: local` reads the folder even under a registered name
    params["datasets"]["yelp"] = {**params["datasets"]["mine"], "corpus": "local"}
    assert pipeline.Plan(params).data_job("yelp").argv[3:6] == ["yelp", "--out", "data/yelp"]
    assert "--local" in pipeline.Plan(params).data_job("yelp").argv
    # no source: one line naming the key
    del params["datasets"]["mine"]["source"]
    with pytest.raises(ConfigError, match=r"^params\.yaml: datasets\.mine\.source: 'mine' is not a registered "
                                          r"corpus .*give `source: DIR`"):
        pipeline.Plan(params)


def test_a_plain_corpus_runs_every_table_but_classification(params, tmp_path):
    tiny_mine(params, source=str(make_corpus(tmp_path / "plain", labelled=False)))
    plan = pipeline.Plan(params)
    exp = plan.experiment("mine")
    assert plan.table_names(exp) == [t for t in pipeline.TABLE_KINDS if t != "table8"]
    assert not any(j.name.startswith("probe_classify") for j in plan.all_jobs())


@needs_snakemake
def test_snakemake_plans_your_own_corpus(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    make_corpus(work / "mycorpus")
    edit_params(work, tiny_mine)
    out = snakemake(work, "-n", "--cores", "2", "mine").stdout
    stats = job_stats(out)
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    jobs = plan.all_jobs(["mine"])
    assert stats["prepare_data"] == 1 and stats["probe"] == sum(j.rule == "probe" for j in jobs)
    assert "textvae data prepare mine --out data/mine --source mycorpus" in out


# ----------------------------------------------------------------------------------------------------------
# end to end: a folder of text → params.yaml lines → `snakemake --cores 2 mine` → reports/mine/
# ----------------------------------------------------------------------------------------------------------

@needs_snakemake
@pytest.mark.slow
def test_your_own_corpus_end_to_end_through_snakemake(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    make_corpus(work / "mycorpus")
    edit_params(work, tiny_mine)
    snakemake(work, "--cores", "2", "mine", env={"OMP_NUM_THREADS": "1"}, timeout=2400)
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    report_dir = work / "reports" / "mine"
    items = plan.report_items(plan.experiment("mine"))
    assert [f"table{i}.md" for i in range(1, 12)] == [i for i in items if i.startswith("table")]
    assert {"claims.md", "index.md", "fig_tradeoff_mine.png", "fig_curves_mine.png"} <= set(items)
    assert_reports_hold_numbers(report_dir, plan, "mine", verdicts=False)
    settings = (report_dir / "table3.md").read_text().split("## Settings")[1]
    assert "your own corpus from mycorpus" in settings and re.search(r"sha256 .*train\.txt [0-9a-f]{12}…", settings)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "mine").stdout
    # an edit of a file of the corpus prepares it again (and what reads it)
    with open(work / "mycorpus" / "test.txt", "a") as fh:
        fh.write("pos\tgood food\n")
    stats = job_stats(snakemake(work, "-n", "--cores", "1", "mine").stdout)
    assert stats["prepare_data"] == 1
