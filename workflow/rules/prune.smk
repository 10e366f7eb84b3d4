# Prune per (model, method, pattern, calibration seed): an HF checkpoint folder (written
# atomically by the command) and a copy of its prune_report.json among the metrics, so that the
# report never needs the checkpoint. The seed names the calibration draw (rule calib) and is the
# solvers' seed too.


rule prune:
    input:
        model=lambda w: model_inputs(w.model),
        calib=lambda w: calib_file(w.model, w.seed),
    output:
        ckpt=directory(f"{R}/models/{{model}}/{{method}}-{{pattern}}-s{{seed}}"),
        report=f"{R}/metrics/{{model}}/{{method}}-{{pattern}}-s{{seed}}/prune.json",
    params:
        apt=apt_command("prune", model_job=True),
        device=DEVICE,
        model=lambda w: model_source(w.model),
        pattern=lambda w: pattern_flags(w.pattern),
        nsamples=CALIB["nsamples"],
        allocation=lambda w: allocation_flags(w.pattern),
        export=export_step,
        seqlen=lambda w: calib_seqlen(w.model),
        dtype=lambda w: dtype_flag(w.model),
        extra=lambda w: config["method_args"].get(w.method, ""),
        code=lambda w: PRUNE_CODE[w.method],   # its method's code version (common.smk)
    threads: THREADS
    resources:
        **GPU_RESOURCES,
    conda:
        ENV
    log:
        f"{R}/logs/prune/{{model}}/{{method}}-{{pattern}}-s{{seed}}.log",
    benchmark:
        f"{R}/logs/prune/{{model}}/{{method}}-{{pattern}}-s{{seed}}.tsv"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} {params.apt} --model {params.model} --method {wildcards.method}"
        " {params.pattern} {params.allocation} --calib {input.calib} --nsamples {params.nsamples} --seed {wildcards.seed}"
        " --seqlen {params.seqlen}"
        " --device {params.device} {params.dtype} {params.extra} --out {output.ckpt} > {log} 2>&1"
        " && cp {output.ckpt}/prune_report.json {output.report}.tmp"
        " && mv {output.report}.tmp {output.report} {params.export}"
