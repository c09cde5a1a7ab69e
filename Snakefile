# textvae: the paper's experiments as a Snakemake workflow (docs/pipeline.md).
#
#   snakemake --cores 8 --resources gpu=2 -- reports/table3.md # one table of the paper (PTB and Yahoo runs)
#   snakemake --cores 2 demo                                   # every table and figure on the embedded corpus
#   snakemake --cores 8 --resources gpu=2 -- paper             # every table and figure of the paper
#   snakemake --cores 8 --resources gpu=2                      # everything (target `all`: paper and demo)
#
# params.yaml holds every experiment knob; the jobs (commands, inputs, outputs) come from textvae.pipeline,
# which also generates dvc.yaml, so `dvc repro` runs the same commands on the same paths.
import sys

from snakemake.utils import min_version, validate

from textvae import pipeline

min_version("8.0")

# Snakemake's own reading of the config names no line and keeps the last of duplicate keys: read it first
try:
    pipeline.load_params("params.yaml")
except pipeline.ConfigError as exc:
    sys.exit(str(exc))


configfile: "params.yaml"


try:
    validate(config, pipeline.SCHEMA)
except Exception as exc:
    # snakemake's message dumps the schema; stop with one line naming the key at fault
    sys.exit(pipeline.schema_error(config, pipeline.SCHEMA) or str(exc))


include: "workflow/rules/common.smk"


rule all:
    input:
        P.report_targets(),
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/report.smk"
