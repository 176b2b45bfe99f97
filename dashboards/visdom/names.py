"""Env names: safe as file names (Visdom saves env E as `<env_path>/E.json`) and, by default, one
per run, grouped under its experiment in Visdom's env list.

Visdom groups envs by the text before their first '_'. A run's env is `<group>_<the rest>`: the
group is the experiment's name (a sweep's name for its variants and its comparison) with every '_'
made '-', so `leaky_relu` runs list under `leaky-relu` rather than under `leaky`; the rest is what
tells the run apart, its run directory's name without the experiment's name in front:
`relu_20261125-171800` for runs/relu-20261125-171800, `activations_20261125-171800-activation_selu`
for that variant of a sweep.
"""

from __future__ import annotations

import re

MAX_ENV_CHARS = 100
_UNSAFE_RUN = re.compile(r"(?:[^A-Za-z0-9_.-]|\.{2,})+")


def safe_env(name: str) -> str:
    """An env name that is also a safe file name.

    Runs of anything but letters, digits, '_', '-' and single dots ('/', '..', spaces, markup)
    become one '_'; no leading dot or dash; at most MAX_ENV_CHARS. Names the spec accepts are kept.
    """
    safe = _UNSAFE_RUN.sub("_", name).lstrip("._-")[:MAX_ENV_CHARS]
    return safe or "run"


def run_env(group: str, *names: str) -> str:
    """`<group>_<names joined by '-'>`, each name without a leading `<group>-`; see the module doc."""
    head = safe_env(group).replace("_", "-")
    parts = [n.removeprefix(group + "-") for n in names if n and n != group]
    tail = safe_env("-".join(parts)) if parts else "run"
    return safe_env(f"{head[:MAX_ENV_CHARS // 2]}_{tail}")
