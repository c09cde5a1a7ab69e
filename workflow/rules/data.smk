rule prepare_data:
    input:
        # your own corpus: its source files (a registered corpus is downloaded or read and verified by the job)
        lambda wc: P.data_job(wc.dataset).inputs,
    output:
        [f"data/{{dataset}}/{name}" for name in pipeline.DATA_FILES],
    params:
        cmd=lambda wc: P.data_job(wc.dataset).cmd,
        knobs=lambda wc: P.data_job(wc.dataset).knobs_json,
    conda:
        ENV
    log:
        "logs/data/{dataset}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
