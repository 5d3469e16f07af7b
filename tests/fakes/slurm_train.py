"""A light rank for the Slurm recipe test: one tracked second, 10 tokens (no process group, no torch)."""

import time

import footprint

with footprint.track("train", interval=0.1) as run:
    run.add_tokens(10)
    time.sleep(1.0)
