"""One declaration per knob (textvae.config.knobs), one resolver (textvae.config.settings.resolve_train) and one
pre-flight check of params.yaml (issue 25 items 2-3, issue 26 item 1): the options of the commands, the value
checks and the schema agree with the declarations; `textvae train --config params.yaml --dataset D --method M`
resolves the pipeline's run; the pre-flight check refuses, naming file:line:key, every value a job refuses,
and Snakemake deletes nothing for it."""
from __future__ import annotations

import argparse
import math
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from textvae.cli.dispatch import build_parser, main
from textvae.cli.train import resolve
from textvae.config import knobs as K
from textvae.config import settings
from textvae.core.errors import ConfigError
from textvae.modeling.methods import METHODS
from textvae.plan import pipeline

from test_pipeline import copy_pipeline, edit_params, fake_textvae_env, needs_snakemake, snakemake, tiny_demo

REPO = Path(__file__).resolve().parents[1]
PARAMS_TEXT = (REPO / "params.yaml").read_text()
EVERY_KNOB = [*K.TRAIN_KNOBS.values(), *K.SIZE_KNOBS.values(), *K.EVAL_KNOBS.values(),
              *(k for _, k in K.PROBE_CHOICE_KNOBS.values())]
PROBE_SIZE_KNOBS = [(probe, k) for probe, knobs in K.PROBE_KNOBS.items() for k in knobs.values()]
# values each rule is tried on (finite ones: the schema and the rule must agree on each)
PROBES = [0, 1, 2, -1, 0.5, 1.0, 0.999, 1.5, 2**64 - 1, 2**64, True, False, "x", "spec", "torch", "fp32", "top",
          "per_example", "all", "li", None, [1]]


def line_of(fragment: str) -> int:
    return next(i for i, line in enumerate(PARAMS_TEXT.splitlines(), 1) if fragment in line)


def subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


# ----------------------------------------------------------------------------------------------------------
# the declarations and what is derived from them
# ----------------------------------------------------------------------------------------------------------

def test_command_options_are_the_declarations():
    parser = build_parser()
    where = [(subparser(parser, "train"), k, None) for k in [*K.TRAIN_KNOBS.values(), *K.SIZE_KNOBS.values()]
             if k.option is not None]
    where += [(subparser(parser, "evaluate"), k, k.default) for k in K.EVAL_KNOBS.values()]
    where += [(subparser(parser, "probe", probe), k, k.default) for probe, k in K.PROBE_CHOICE_KNOBS.values()]
    where += [(subparser(parser, "probe", probe), k, k.default) for probe, k in PROBE_SIZE_KNOBS]
    # train (TrainConfig but progress; sizes), evaluate, probes (SPEC choices; settings: 6 × max_examples and
    # bleu 1, smoothness 1, noisy 1, interpolate 3, copy 2, classify 5)
    assert len(where) == 29 + 7 + 4 + 8 + 6 + 13
    for p, k, default in where:
        act = option(p, k.flag)
        assert act.default == default, k.name          # train: unset, so params.yaml's value stands
        assert k.help in act.help, k.name
        if k.kind is bool:
            assert isinstance(act, argparse.BooleanOptionalAction), k.name
        elif k.many:
            assert act.nargs == k.many and act.type is k.kind, k.name
        elif isinstance(k.rule, tuple):
            assert tuple(act.choices) == k.rule, k.name
        else:
            assert act.type is k.kind, k.name
    # the sizes and TrainConfig: one set of names
    assert set(K.SIZE_KNOBS) == set(settings.MODEL_KEYS) and "vocab_size" not in K.SIZE_KNOBS
    assert set(K.TRAIN_KNOBS) == K.TrainConfig.field_names() - {"method"}


def test_schema_parts_are_generated_from_the_declarations():
    raw = yaml.safe_load((REPO / settings.SCHEMA).read_text())["$defs"]
    schema = settings.load_schema(REPO / settings.SCHEMA)["$defs"]
    generated = K.schema_defs()
    for name in generated:
        assert set(raw[name]) == {"$comment"} and "generated" in raw[name]["$comment"], name   # no hand copy
    assert set(schema["training"]["properties"]) == set(K.section_knobs("training"))
    assert set(schema["train_overrides"]["properties"]) == set(K.section_knobs("training", K.DATASET)) | {"methods"}
    assert set(schema["sizes"]["properties"]) == set(K.SIZE_KNOBS)
    assert set(schema["spec_choices"]["required"]) == set(K.section_knobs("spec_choices")) == \
        set(yaml.safe_load(PARAMS_TEXT)["spec_choices"])
    assert set(schema["evaluation"]["properties"]) == set(K.EVAL_KNOBS)
    assert {p: set(v["properties"]) for p, v in schema["probing"]["properties"].items()} == \
        {p: set(knobs) for p, knobs in K.PROBE_KNOBS.items()}


@pytest.mark.parametrize("probe, knob", [(None, k) for k in EVERY_KNOB if k.section] + PROBE_SIZE_KNOBS,
                         ids=lambda k: getattr(k, "name", k))
def test_the_schema_and_the_value_rule_agree(probe, knob):
    """Every finite value: the schema admits it exactly when the job's rule does (NaN and inf the schema cannot
    see: the pre-flight check applies the rule itself, test_preflight_check_refuses_what_a_job_refuses)."""
    defs = K.schema_defs()
    schema = (defs["probing"]["properties"][probe] if probe else defs[knob.section])["properties"][knob.name]
    values = PROBES + [math.nan, math.inf]
    if knob.many:   # a list setting: each value alone, and in lists
        values = values + [[v] for v in values if v is not None] + [[], [3, 0], [3, 4]]
    for value in values:
        if value is None:
            continue
        by_rule = knob.problem(value) is None
        by_schema = jsonschema.Draft202012Validator(schema).is_valid(value)
        # what JSON schema cannot say: finiteness, and that 1.0 is no integer (it counts it as one)
        item = value[0] if isinstance(value, list) and len(value) == 1 else value
        if isinstance(item, float) and (not math.isfinite(item) or "integer" in str(schema)):
            assert not by_rule, (knob.name, value)
        else:
            assert by_rule == by_schema, (knob.name, value, by_rule, by_schema)


def test_dropout_is_one_rule_everywhere(tmp_path):
    k = K.SIZE_KNOBS["dropout_in"]
    assert k.problem(1.0) and k.problem(0.99) is None
    sizes = K.schema_defs()["sizes"]
    assert not jsonschema.Draft202012Validator(sizes).is_valid({**dict.fromkeys(sizes["required"], 8),
                                                                 "dropout_in": 1.0})


# ----------------------------------------------------------------------------------------------------------
# one resolver
# ----------------------------------------------------------------------------------------------------------

def test_train_with_config_dataset_and_method_is_the_pipelines_run():
    """For every method of the demo: the user's `textvae train --config params.yaml --dataset synthetic --method M
    [--lam L]` resolves the run of the pipeline's job, and both hold what params.yaml gives that run
    (global → dataset → method, the plan's own merge of the job's rerun trigger)."""
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / settings.SCHEMA)
    parser = build_parser()
    jobs = [j for j in plan.all_jobs(["demo"]) if j.rule == "train"]
    assert {j.argv[j.argv.index("--method") + 1] for j in jobs} == set(METHODS)
    for job in jobs:
        args = parser.parse_args(job.argv[1:])
        user = ["train", "--data", "data/synthetic", "--out", "elsewhere", "--config", str(REPO / "params.yaml"),
                "--dataset", "synthetic", "--method", args.method]
        user += ["--lam", str(args.lam)] if args.lam is not None else []
        user += ["--init-from", args.init_from] if args.init_from else []
        cfg, sizes = resolve(args)
        user_cfg, user_sizes = resolve(parser.parse_args(user))
        assert (user_cfg, user_sizes) == (cfg, sizes), job.name
        expected = {**job.knobs["training"], **{k: v for k, v in job.knobs["spec_choices"].items()
                                                 if k in K.TRAIN_KNOBS}}
        for key, value in expected.items():
            assert getattr(cfg, key) == value and type(getattr(cfg, key)) is K.TRAIN_KNOBS[key].kind, (job.name, key)
        assert sizes == job.knobs["sizes"]
    ae = next(resolve(parser.parse_args(j.argv[1:]))[0] for j in jobs if "-ae-" in j.name)
    assert (ae.max_epochs, ae.encoder_init, ae.warm_up) == (20, "torch_forget", 2.0)


def test_options_win_over_every_layer(tmp_path):
    parser = build_parser()
    base = ["train", "--data", "data/synthetic", "--out", "x", "--config", str(REPO / "params.yaml"),
            "--method", "ae"]
    cfg, sizes = resolve(parser.parse_args(base + ["--epochs", "3", "--encoder-init", "spec", "--nz", "4",
                                                   "--no-pretrain-reset-decoder"]))
    assert (cfg.max_epochs, cfg.encoder_init, sizes["nz"], cfg.pretrain_reset_decoder) == (3, "spec", 4, False)


# ----------------------------------------------------------------------------------------------------------
# the pre-flight check
# ----------------------------------------------------------------------------------------------------------

# (what is edited in params.yaml, how, the key named, the line's fragment in params.yaml)
BAD = {
    "lr-nan": ("  max_epochs: 100\n", "  max_epochs: 100\n  lr: .nan\n", "training.lr", "  max_epochs: 100", 1),
    "warm-up-inf": ("      max_epochs: 6\n      warm_up: 2\n", "      max_epochs: 6\n      warm_up: .inf\n",
                    "datasets.synthetic.training.warm_up", "      warm_up: 2", 0),
    "dropout-1": ("enc_hidden: 64, dec_hidden: 64, nz: 32}", "enc_hidden: 64, dec_hidden: 64, nz: 32, dropout_in: 1.0}",
                  "datasets.synthetic.sizes.dropout_in", "&demo_sizes", 0),
    "source-synthetic": ("    source: null\n    prepare: {examples: [4000, 500, 500]}\n",
                         "    source: ../shared/data/ptb\n    prepare: {examples: [4000, 500, 500]}\n",
                         "datasets.synthetic.source", "    prepare: {examples: [4000, 500, 500]}", -1),
    "epochs-not-integer": ("  max_epochs: 100\n", "  max_epochs: 1.0\n", "training.max_epochs", "  max_epochs: 100", 0),
    "seed-beyond-rng": ("seeds: [783435]", "seeds: [99999999999999999999]", "seeds[0]", "seeds: [783435]", 0),
}


@pytest.mark.parametrize("case", list(BAD))
def test_preflight_check_refuses_what_a_job_refuses(case, tmp_path, capsys):
    old, new, key, fragment, shift = BAD[case]
    assert PARAMS_TEXT.count(old) >= 1
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_TEXT.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        settings.load_checked(path, REPO / settings.SCHEMA)
    assert str(info.value).startswith(f"{path}:{line_of(fragment) + shift}: {key}: "), str(info.value)
    # the same value, where a job reads it, is refused by the job too (before it writes anything)
    if case == "source-synthetic":
        from textvae.corpora.prepare import prepare
        with pytest.raises(ConfigError, match="takes no --source"):
            prepare("synthetic", tmp_path / "data", source="../shared/data/ptb")
        return
    argv = ["train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "run"), "--config", str(path),
            "--dataset", "synthetic", "--method", "vae"]
    if case == "seed-beyond-rng":   # the pipeline gives the seed as an option
        argv = argv[:argv.index("--config")] + ["--method", "vae", "--seed", str(settings.load_params(path)["seeds"][0])]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and (key.rsplit(".", 1)[-1] in err or "--seed" in err), err
    assert not (tmp_path / "run").exists()


def test_line_numbers_survive_aliases_and_name_the_first_place(tmp_path):
    path = tmp_path / "params.yaml"
    # the demo's sizes are written once (&demo_sizes) and used by synthetic and synthetic_s2 (*demo_sizes)
    path.write_text(PARAMS_TEXT.replace("enc_hidden: 64, dec_hidden: 64, nz: 32}", "enc_hidden: 64, dec_hidden: 64, nz: 0}", 1))
    with pytest.raises(ConfigError, match=rf":{line_of('&demo_sizes')}: datasets\.synthetic\.sizes\.nz: "):
        settings.load_checked(path, REPO / settings.SCHEMA)


def test_argparse_errors_are_one_line_and_exit_1(capsys):
    assert main(["train", "--data", "d", "--out", "o", "--method", "ae", "--epochs", "ten"]) == 1
    assert capsys.readouterr().err.strip() == "textvae train: error: --epochs: invalid int value: 'ten'"
    assert main(["probe", "bleu", "--ckpt", "c", "--data", "d", "--out", "o", "--latent", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("textvae probe: error: --latent: invalid choice: 'nope'") and "\n" not in err
    assert main(["pipeline", "check", "--nope"]) == 1
    assert capsys.readouterr().err.strip() == "textvae pipeline: error: unrecognized arguments: --nope"


@needs_snakemake
def test_snakemake_configfile_values_are_named_as_such(tmp_path):
    """A bad value from --configfile is not params.yaml's (which holds no such value); a good one that differs
    from params.yaml is refused too: the commands read params.yaml."""
    work = copy_pipeline(tmp_path / "wf")
    (work / "extra.yaml").write_text("training:\n  lr: .nan\n")
    proc = snakemake(work, "-n", "--cores", "1", "--configfile", "extra.yaml", "--", "demo", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == \
        "snakemake --config/--configfile: training.lr: expected a finite number > 0, got nan", proc.stderr[-2000:]
    (work / "extra.yaml").write_text("training:\n  lr: 0.1\n")
    proc = snakemake(work, "-n", "--cores", "1", "--configfile", "extra.yaml", "--", "demo", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "snakemake --config/--configfile: training: differs from params.yaml"), proc.stderr[-2000:]


@needs_snakemake
def test_a_value_a_job_refuses_deletes_nothing_through_snakemake(tmp_path):
    """The four deleted-results cases of issue 26: a finished run and its corpus (stand-in commands), then
    params.yaml edited with a value the job would refuse, and snakemake run for real: it stops before any job,
    every file as it was."""
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    target = "results/synthetic/ae/seed783435/best.pt"
    snakemake(work, "--cores", "1", "--", target, env=fake_textvae_env(tmp_path))
    outputs = [f"results/synthetic/ae/seed783435/{f}" for f in pipeline.RUN_FILES] + \
        [f"data/synthetic/{f}" for f in pipeline.DATA_FILES]
    before = {f: (work / f).stat().st_mtime_ns for f in outputs}
    good = (work / "params.yaml").read_text()
    edits = {
        "dropout_in": lambda p: p["datasets"]["synthetic"]["sizes"].__setitem__("dropout_in", 1.0),
        "lr": lambda p: p["training"].__setitem__("lr", math.nan),
        "warm_up": lambda p: p["datasets"]["synthetic"]["training"].__setitem__("warm_up", math.inf),
        "source": lambda p: p["datasets"]["synthetic"].__setitem__("source", "../shared/data/ptb"),
    }
    for name, edit in edits.items():
        (work / "params.yaml").write_text(good)
        edit_params(work, edit)
        proc = snakemake(work, "--cores", "1", "--", target, check=False)
        assert proc.returncode != 0, name
        assert re.match(rf"params\.yaml:\d+: datasets\.synthetic\.\w+\.?\w*: |params\.yaml:\d+: training\.lr: ",
                        proc.stderr.strip().splitlines()[-1]), (name, proc.stderr[-2000:])
        assert {f: (work / f).stat().st_mtime_ns for f in outputs if (work / f).exists()} == before, name
    shutil.rmtree(work / ".snakemake", ignore_errors=True)


@pytest.mark.parametrize("old, new, key, flag, bad", [
    ("  interpolate: {pairs_interp: 10, points: 11}", "  interpolate: {pairs_interp: 10, points: 1}",
     "probing.interpolate.points", "--points", "1"),
    ("  noisy: {swaps: [1, 2, 3, 4]}", "  noisy: {swaps: [1, 0]}", "probing.noisy.swaps[1]", "--swaps", "0"),
])
def test_probe_settings_are_refused_alike_by_the_preflight_check_and_the_probe(old, new, key, flag, bad, tmp_path,
                                                                               capsys):
    """A probe's size setting has one rule: params.yaml's pre-flight check names file:line:key, and the probe
    command refuses the same value as one line naming the option, before it reads the checkpoint."""
    assert PARAMS_TEXT.count(old) == 1
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_TEXT.replace(old, new))
    with pytest.raises(ConfigError) as info:
        settings.load_checked(path, REPO / settings.SCHEMA)
    assert str(info.value).startswith(f"{path}:{line_of(old.strip())}: {key}: "), str(info.value)
    probe = key.split(".")[1]
    argv = ["probe", probe, "--ckpt", str(tmp_path / "missing.pt"), "--data", str(tmp_path), "--out",
            str(tmp_path / "p.json"), flag, *(["1", bad] if probe == "noisy" else [bad]), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"textvae probe: error: {flag}: expected ") and "\n" not in err, err
    assert not (tmp_path / "p.json").exists()
