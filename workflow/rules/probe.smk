rule probe:
    input:
        lambda wc: P.probe_job(run_of(wc), wc.probe).inputs,
    output:
        "results/{dataset}/{run}/seed{seed}/probe_{probe}.json",
    params:
        cmd=lambda wc: P.probe_job(run_of(wc), wc.probe).cmd,
        knobs=lambda wc: P.probe_job(run_of(wc), wc.probe).knobs_json,
        # runtime setting, not a rerun trigger (a params function of `resources` is "derived")
        gpu_run=lambda wc, resources: GPU_RUN,
    log:
        "logs/probe/{dataset}/{run}/seed{seed}/{probe}.log",
    conda:
        ENV
    resources:
        gpu=1,
    shell:
        "{params.gpu_run} {params.cmd} > {log} 2>&1"
