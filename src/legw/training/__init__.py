"""Training: one run of a task at a global batch size, on one process or N under torchrun.

``config`` (what a run is), ``trainer`` (the loop), ``batches`` (the sharding invariant),
``position`` (where a run is, and elastic resume), ``checkpoint``, ``dist``, ``evaluate`` and
``run_dir`` (the files of a run directory). Importing the package imports no torch.
"""
