"""The Slurm runner: one batch job per run on a real Slurm cluster (docs/runners.md)."""
