"""The benchmarks of APT: scripts that measure layer errors, time and memory and write JSON under
``results/benchmarks/``. Run them from the repository root as modules, e.g.
``.venv/bin/python -m benchmarks.solvers --help``; ``benchmarks/README.md`` lists them all.
Their shared helpers are in :mod:`benchmarks.common`.
"""
