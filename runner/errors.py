"""What a person's mistake is: `UserError`, whose message is the whole story in one paragraph.

Every error that means "bad input" (a spec, a flag, a data file, a model, a run directory, a machine
too small for the run) derives from it, so the CLI turns all of them into exit 2 with the message and
no traceback, and a sweep shows them as a row's reason, in one place each. Anything else is a bug
or the machine's trouble, and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message names the field or file and what would be valid."""

    exit_status = 2
