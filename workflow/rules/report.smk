# Aggregate every metrics JSON the config asks for into tables (Markdown, CSV, LaTeX), plots
# and one metrics file for DVC. Settings come from inside the JSONs, never from file names.


rule report:
    input:
        metric_files(),
    output:
        tables=[
            t if t.endswith(".tex") else report(t, category="Tables", caption="../report/tables.rst")
            for t in TABLES
        ],
        plots=report(
            directory(f"{R}/plots"),
            patterns=["{name}.png"],
            category="Plots",
            caption="../report/plots.rst",
        ),
        summary=f"{R}/metrics.json",
    params:
        apt=apt_command("report"),
        out_dir=lambda w, output: f"--out-dir {Path(output.tables[0]).parent}" if TABLES else "",
    conda:
        ENV
    log:
        f"{R}/logs/report.log",
    shell:
        "{params.apt} --metrics {input} {params.out_dir} --plots-dir {output.plots}"
        " --summary {output.summary} > {log} 2>&1"
