# Tables, figures and the index of each experiment: reports/ (paper) and reports/EXPERIMENT/.
localrules:
    prepare_data,
    report,
    report_index,


rule report:
    input:
        lambda wc: report_job(wc).inputs,
    output:
        # `snakemake --report report.html demo`: one HTML file, a category per experiment, a subcategory per table
        # and figure (docs/pipeline.md)
        report("{root}/{item}", category="{root}", subcategory="{item}", labels={"experiment": "{root}",
                                                                              "item": "{item}"}),
    wildcard_constraints:
        root="|".join(REPORT_DIRS),
        item=tables.REPORT_ITEM_PATTERN,
    params:
        cmd=lambda wc: report_job(wc).cmd,
        knobs=lambda wc: report_job(wc).knobs_json,
    conda:
        ENV
    log:
        "logs/{root}/{item}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


# The index links every table and figure: built after them, but not rebuilt when only their content changes
# (ancient), so adding a λ reruns just the reports that show it; it shows the claims' verdicts, so it follows
# claims.md.
rule report_index:
    input:
        lambda wc: [f if f.endswith("claims.md") else ancient(f) for f in report_job(wc, "index.md").inputs],
    output:
        report("{root}/index.md", category="{root}", subcategory="index.md", labels={"experiment": "{root}",
                                                                                  "item": "index.md"}),
    wildcard_constraints:
        root="|".join(REPORT_DIRS),
    params:
        cmd=lambda wc: report_job(wc, "index.md").cmd,
        knobs=lambda wc: report_job(wc, "index.md").knobs_json,
    conda:
        ENV
    log:
        "logs/{root}/index.md.log",
    shell:
        "{params.cmd} > {log} 2>&1"


# `snakemake demo`, `snakemake paper`: every report of one experiment, and the results they read (so that a
# fresh clone, whose reports are committed, still runs the experiment)
for _exp in P.experiments:

    rule:
        name:
            _exp
        input:
            P.experiment_targets(_exp),
