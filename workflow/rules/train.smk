# One rule for every method: the AE of a dataset and seed is a run like the others (results/D/ae/seedS),
# shared by every run that starts from it (the methods with `pretrained_encoder` in textvae.modeling.methods).
# An interrupted job (Ctrl-C, SIGKILL, a cluster time limit) continues from its last finished epoch when it is
# run again: the command passes --resume, and the resume state last.pt is not a declared output, so Snakemake
# does not delete it with the incomplete outputs (pipeline.RUN_FILES; docs/reliability.md).
rule train:
    input:
        lambda wc: P.train_job(run_of(wc)).inputs,
    output:
        [f"results/{{dataset}}/{{run}}/seed{{seed}}/{name}" for name in pipeline.RUN_FILES],
    params:
        cmd=lambda wc: P.train_job(run_of(wc)).cmd,
        knobs=lambda wc: P.train_job(run_of(wc)).knobs_json,
        # runtime setting, not a rerun trigger (a params function of `resources` is "derived")
        gpu_run=lambda wc, resources: GPU_RUN,
    log:
        "logs/train/{dataset}/{run}/seed{seed}.log",
    conda:
        ENV
    resources:
        gpu=1,
    shell:
        "{params.gpu_run} {params.cmd} > {log} 2>&1"
