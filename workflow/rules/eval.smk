# Evaluation per model variant: "dense" (the unpruned model, once per model: the reference row)
# or "<method>-<pattern>-s<seed>" (a checkpoint from rule prune, pruned from calibration draw
# <seed>).


rule ppl:
    input:
        model=variant_inputs,
        data=lambda w: dataset_inputs(w.dataset),
    output:
        f"{R}/metrics/{{model}}/{{variant}}/ppl-{{dataset}}.json",
    params:
        apt=apt_command("eval ppl", model_job=True),
        device=DEVICE,
        model=variant_model,
        dataset=lambda w: dataset_source(w.dataset),
        seqlen=lambda w: eval_seqlen(w.model),
        windows=f"--max-windows {PPL['max_windows']}" if PPL.get("max_windows") else "",
        batch=f"--batch-size {PPL.get('batch_size', 1)}",
        dtype=lambda w: dtype_flag(w.model),
        code=EVAL_CODE,   # library version: a code change reruns the job (common.smk)
    threads: THREADS
    resources:
        **GPU_RESOURCES,
    conda:
        ENV
    log:
        f"{R}/logs/ppl/{{model}}/{{variant}}/{{dataset}}.log",
    benchmark:
        f"{R}/logs/ppl/{{model}}/{{variant}}/{{dataset}}.tsv"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} {params.apt} --model {params.model} --dataset {params.dataset}"
        " --seqlen {params.seqlen} {params.windows} {params.batch} --device {params.device} {params.dtype}"
        " --out {output} > {log} 2>&1"


rule zeroshot:
    input:
        model=variant_inputs,
        tasks=asset_stamp("tasks"),
    output:
        f"{R}/metrics/{{model}}/{{variant}}/zeroshot.json",
    params:
        apt=apt_command("eval zeroshot", model_job=True),
        device=DEVICE,
        model=variant_model,
        tasks=",".join(ZS_TASKS),
        limit=f"--limit {ZS['limit']}" if ZS.get("limit") else "",
        batch=f"--batch-size {ZS.get('batch_size', 8)}",
        dtype=lambda w: dtype_flag(w.model),
        code=EVAL_CODE,   # library version: a code change reruns the job (common.smk)
    threads: THREADS
    resources:
        **GPU_RESOURCES,
    conda:
        ENV
    log:
        f"{R}/logs/zeroshot/{{model}}/{{variant}}.log",
    benchmark:
        f"{R}/logs/zeroshot/{{model}}/{{variant}}.tsv"
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} {params.apt} --model {params.model} --tasks {params.tasks}"
        " {params.limit} {params.batch} --device {params.device} {params.dtype} --out {output} > {log} 2>&1"
