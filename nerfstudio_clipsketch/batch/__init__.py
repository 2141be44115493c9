"""``clipsketch-batch``: many captures times a grid of ``ns-train clipsketch`` settings, each run a Ray task.

- :mod:`.grid`: the batch as the user gives it (captures, ``--sweep``, ``--set``, seeds, a YAML/JSON file) and its
  expansion into runs with stable names;
- :mod:`.runs`: one run's folder (nerfstudio's layout), its state (new, stopped, trained, finished), its record and
  the ``ns-train`` / ``clipsketch-eval`` commands that finish it;
- :mod:`.task`: the body of a run's Ray task: those commands as child processes, stopped with SIGTERM;
- :mod:`.results`: the results table (CSV, JSON) and the best of N seeds;
- :mod:`.contact_sheet`: one tile per run, rows = captures, columns = settings;
- :mod:`.progress`: runs done / running / failed and the ETA;
- :mod:`.driver`: Ray itself (the only module that imports it): start or join, submit, wait, stop.

Importing this package imports neither Ray nor torch.
"""
