"""Comparisons: a spec's `sweep` (listed values) or `search` (drawn values), or several specs, made
into variants that each train as an ordinary run in one sweep directory, and the results table.

- `variants`: one variant per combination, its name and its label (what sets it apart);
- `search`: variants drawn from a space (Optuna locally; runner.executors.ray uses Tune's engines);
- `plan`: the comparison of some specs, and what `--dry-run` prints;
- `results`: the table (console, results.md, results.csv, the dashboards' copy);
- `record`: the sweep directory on disk: sweep.json written and read back (`--resume`), and
  finished runs gathered into a comparison (`compare`), tracked runs among them;
- `importance`: what mattered: each varied key's importance for the metric (Optuna, lazily).

The executors (runner.executors) train the variants. Importing any of these stays cheap (no torch).
"""
