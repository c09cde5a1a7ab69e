# textvae: the paper's experiments as a Snakemake workflow (docs/pipeline.md).
#
#   snakemake --cores 8 --resources gpu=2 -- reports/table3.md # one table of the paper (PTB and Yahoo runs)
#   snakemake --cores 2 demo                                   # every table and figure on the embedded corpus
#   snakemake --cores 8 --resources gpu=2 -- paper             # every table and figure of the paper
#   snakemake --cores 8 --resources gpu=2                      # everything (target `all`: paper and demo)
#
# params.yaml holds every experiment knob; the jobs (commands, inputs, outputs) come from textvae.plan.pipeline,
# which also generates dvc.yaml, so `dvc repro` runs the same commands on the same paths.
import sys

from snakemake.utils import min_version

from textvae.config import settings
from textvae.core.errors import ConfigError

min_version("8.0")

# params.yaml is read and checked first, before Snakemake reads it: every rule a job applies to its values
# (JSON schema, the knobs' rules, corpus requests, cross-key rules, the method registry), so no job starts, and
# no output is deleted, for a value a job would refuse; one line naming the file, line and key
try:
    PARAMS_ON_DISK = settings.load_checked(settings.PARAMS)
except ConfigError as exc:
    sys.exit(str(exc))


configfile: "params.yaml"


# what --config/--configfile changed is checked as theirs (the textvae commands read params.yaml itself: knobs
# set there would not reach them)
try:
    settings.check_params(config, settings.SCHEMA, settings.SNAKEMAKE_CONFIG)
    settings.check_same_knobs(config, PARAMS_ON_DISK)
except ConfigError as exc:
    sys.exit(str(exc))


include: "workflow/rules/common.smk"


rule all:
    input:
        P.experiment_targets(),
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/report.smk"
