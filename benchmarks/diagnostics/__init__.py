"""One-off diagnoses of the CPU train step: each answered one question, and its answer lives in
`benchmarks/results/` (gelu.md, attention.md, step_profile.md, xla_cpu_flags.md). Kept runnable
(`python -m benchmarks.diagnostics.NAME`), outside `benchmarks/run.py` and CI."""
