"""Experiments over many training runs: batch-size sweeps, the tuned baseline, and reports.

``launcher`` starts ``legw train`` runs as subprocesses, resumably; ``sweep`` and ``tune`` plan
them; ``records`` reads what the runs wrote; ``report`` and ``plots`` turn records into figures.
"""
