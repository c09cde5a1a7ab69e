rule prepare_data:
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
