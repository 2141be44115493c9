"""``clipsketch-batch``: many captures times a grid of ``ns-train clipsketch`` settings, each run a Ray Tune trial.

- :mod:`.grid`: the batch as the user gives it (captures, ``--sweep``, ``--set``, seeds, a YAML/JSON file) and its
  expansion into runs with stable names;
- :mod:`.runs`: one run's folder (nerfstudio's layout), its state, its record and the commands that finish it;
- :mod:`.trial`: a run's stages as child processes, stopped with SIGTERM;
- :mod:`.tuning`: Ray Tune itself: the trials, the early stopping of poor seeds, restoring an interrupted sweep;
- :mod:`.results`, :mod:`.contact_sheet`: the results table and the best of N seeds; one tile per run;
- :mod:`.driver`: a batch from its plan to its table; starts or joins Ray.

Importing this package imports neither Ray nor torch.
"""
