"""Training: one run of a task at a global batch size, on one process or N under torchrun.

``config`` (what a run is), ``trainer`` (the loop), ``batches`` (the sharding invariant),
``position`` (where a run is, and elastic resume), ``checkpoint``, ``dist``, ``evaluate`` and
``run_files`` (what a run directory holds). Importing the package imports no torch.
"""
