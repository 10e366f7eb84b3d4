# APT pipeline: assets -> calibration -> prune -> evaluate -> report.
#
#   snakemake --cores all                                  # the embedded default (CPU)
#   snakemake --cores all --configfile config/compare.yaml # SparseGPT vs APT over 3 calibration draws
#   snakemake --cores all --configfile config/paper.yaml --resources gpu=4   # one GPU node
#   snakemake --profile profiles/slurm --configfile config/paper.yaml        # a SLURM cluster
#   snakemake --report results/report.html                # after a run
#   dvc repro                                              # the same, versioned by DVC
#
# The rules are in workflow/rules/, one file per stage; each calls the `apt` command.
# Paths are documented in docs/pipeline.md.

# The default config, unless --configfile names another: a config file is complete on its own
# (Snakemake would otherwise merge the two, e.g. add the default's model to the paper's).
# Small changes: --config key=value on top of either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/calib.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    assets,
    report,


rule all:
    default_target: True
    input:
        TABLES,
        f"{R}/plots",
        f"{R}/metrics.json",
