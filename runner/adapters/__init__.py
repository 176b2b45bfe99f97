"""Training frameworks' own hooks, each a thin layer on the tracking API (runner.track):
`runner.adapters.lightning` (a Lightning Logger) and `runner.adapters.ignite` (an ignite handler).

Each module imports its framework when it is imported and says which extra installs it if missing;
this package imports neither, and `runner.track` never imports this package.
"""
