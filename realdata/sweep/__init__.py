"""Sweeps: many training runs (methods x radii x seeds) from one spec, on a local pool or SLURM."""
