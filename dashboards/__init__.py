"""What a person looks at, split by medium.

    visdom/     the live dashboard on a Visdom server: the registry's entry and env names (runs), the
                sender core (sender, connection), a run's
                env (logger, panes, windows, insight), the comparison board (compare), env names (names), the server
                launcher (server, with process, access, readiness) and its offline web assets (assets)
    report/     the offline page: one self-contained HTML file per run or sweep, read from the run
                directories' files; it knows no Visdom (it reads only the plotly.js pin of
                visdom/assets.json)
    charts.py   the chart data both media share: seed bands, colours, chart and metric titles, groups of
                names, smoothing, the confusion heatmap and accuracy per class
    distributions.py  percentile bands read off histograms (weights and gradients over steps)
    parallel.py the parallel coordinates of a comparison's runs and each key's importance
    tensorboard.py  `--logger tensorboard`: event files in the run directory

Arrows point one way: `runner/` reaches these only by name, through its logger registry
(runner.loggers.registry: `visdom.runs`, `tensorboard`, `report`), imported when chosen; the two
media both draw on `charts` and never on each other, but for the report reading the plotly pin from
the asset manifest.
"""
