# Calibration windows per (model, dataset, nsamples, seqlen, seed): token ids in a .pt file,
# shared by every method and pattern of that model; one file per seed of calibration.seeds.


rule calib:
    input:
        model=lambda w: model_inputs(w.model),
        data=lambda w: dataset_inputs(w.dataset),
    output:
        f"{R}/calib/{{model}}/{{dataset}}-n{{nsamples}}-l{{seqlen}}-s{{seed}}.pt",
    params:
        apt=apt_command("calib"),
        model=lambda w: model_source(w.model),
        dataset=lambda w: dataset_source(w.dataset),
    conda:
        ENV
    log:
        f"{R}/logs/calib/{{model}}/{{dataset}}-n{{nsamples}}-l{{seqlen}}-s{{seed}}.log",
    benchmark:
        f"{R}/logs/calib/{{model}}/{{dataset}}-n{{nsamples}}-l{{seqlen}}-s{{seed}}.tsv"
    shell:
        "{params.apt} --model {params.model} --dataset {params.dataset}"
        " --nsamples {wildcards.nsamples} --seqlen {wildcards.seqlen} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"
