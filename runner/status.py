"""The one vocabulary of how a run stands, shared by summary.json, the journal's close event, the
results tables (console, results.csv/md, the dashboards) and sweep.json.

A run's summary says FINISHED, STOPPED_EARLY (a search's scheduler ended it: a result), DIVERGED or
FAILED; a run that was stopped by a signal writes no summary (it can be resumed) and its loggers hear
STOPPED. A sweep's table adds the states of variants that have not ended: NOT_RUN, RUNNING and
UNFINISHED (a journal without a summary: killed, or still running elsewhere).
"""

from __future__ import annotations

FINISHED, STOPPED_EARLY, DIVERGED, FAILED = "finished", "stopped early", "diverged", "failed"
STOPPED, NOT_RUN, RUNNING, UNFINISHED = "stopped", "not run", "running", "unfinished"

TRAINED = (FINISHED, STOPPED_EARLY)  # trained as far as it was meant to: a result
SETTLED = (FINISHED, STOPPED_EARLY, FAILED)  # a resumed sweep does not run these again
TO_RUN = (NOT_RUN, STOPPED, UNFINISHED)  # a sweep (or a resumed one) still trains these

LEGACY = {"ok": FINISHED}  # sweep.json files written before this vocabulary


def read(word: object) -> str:
    """A status as recorded on disk, in today's words."""
    return LEGACY.get(str(word), str(word))
