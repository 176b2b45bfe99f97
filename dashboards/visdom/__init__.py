"""The live dashboard on a Visdom server.

    sender.py, connection.py   the one background send loop (pacing, backoff, login, env reset, saving)
                               and its HTTP; the run logger and the comparison board are thin layers on it
    bounded.py                 each request to the server bounded in total, however slowly it answers
    logger.py                  VisdomLogger: a run's env, live (`--logger visdom`)
    windows.py                 a line window's traces kept bounded: recent points and a min/max envelope
    panes.py                   the HTML of the run pane (with its lease) and of the predictions table
    compare.py                 ComparisonBoard: one env comparing a sweep's runs, seeds as bands
    names.py                   env names: safe file names, one per run, grouped by experiment
    server.py                  `python -m dashboards.visdom.server start|stop|status|prune`: the launcher,
                               made of process.py (pid files, signals), access.py (binding, login) and
                               readiness.py (HTTP checks); it runs Visdom behind guard.py (Host and
                               Origin checked on every request, the ?token= link)
    assets.py, assets.json     `python -m dashboards.visdom.assets`: Visdom's web assets, offline, pinned

Importing this package imports nothing: visdom itself is imported only when a VisdomLogger is made.
"""
