"""Worker code: ``workers/runtime`` (the library every worker image uses) and one folder per
worker (``workers/<worker-name>/main.py``). Worker folders carry hyphens, so they are loaded by
path (``workers.runtime.loader``), not imported as packages."""
