"""The lab notebook: every run and sweep under runs/ as one table (`python -m runner runs`), tags and
notes kept beside a run (`tag`, `note`), what differs between two runs (`diff`), and what made a run
(`provenance`). Nothing here imports torch: listing a thousand runs answers in well under a second.

    reading.py     bounded reads of files nobody vouches for (never through a link, never a FIFO)
    scan.py        a run directory read into a row (damaged files are a state, not an error)
    index.py       the rows remembered in FOLDER/.index.json, rebuilt for directories whose files changed
    query.py       --where, --sort, --limit, --tag; the keys that differ between rows
    notes.py       RUN/notes.json: tags and timestamped notes
    table.py       the rows as a console table, JSON or CSV
    diffs.py       two runs compared: spec, code, versions, results
    provenance.py  what made a run: commits, dirty trees and diffs, versions, host, command line
    cli.py         the commands' parsers and handlers
"""
