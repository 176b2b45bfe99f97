"""Models of your own: `"model": {"kind": "python", "target": "models.MODULE:CALLABLE", "args": {...}}` in an
experiment file of the folder above finds them here (the experiment's folder is searched first)."""
