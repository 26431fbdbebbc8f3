"""Recognition over clip archives: a Ray Data job (embedded on one machine, or on a cluster by address) that loads
the model once per worker, streams the clips, writes one row per clip (errors included) and resumes where a run
stopped. ``archive.py`` lists the clips, ``store.py`` keeps the rows, ``job.py`` runs them, ``report.py`` scores
them."""
