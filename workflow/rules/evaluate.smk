rule evaluate:
    input:
        lambda wc: P.evaluate_job(run_of(wc)).inputs,
    output:
        "results/{dataset}/{run}/seed{seed}/eval_test.json",
    params:
        cmd=lambda wc: P.evaluate_job(run_of(wc)).cmd,
        knobs=lambda wc: P.evaluate_job(run_of(wc)).knobs_json,
        # runtime setting, not a rerun trigger (a params function of `resources` is "derived")
        gpu_run=lambda wc, resources: GPU_RUN,
    log:
        "logs/evaluate/{dataset}/{run}/seed{seed}.log",
    conda:
        ENV
    resources:
        gpu=1,
    shell:
        "{params.gpu_run} {params.cmd} > {log} 2>&1"
