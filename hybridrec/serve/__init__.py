"""Real-time serving over HTTP: ``python -m hybridrec.serve RUN``.

* :mod:`hybridrec.serve.app`: the FastAPI app, :func:`create_app` (endpoints, limits, errors);
* :mod:`hybridrec.serve.live`: the Recommender shared by requests and updated live;
* :mod:`hybridrec.serve.journal`: the update journal, fsynced before an update is answered;
* :mod:`hybridrec.serve.telemetry`: request counts and latencies for ``GET /metrics``;
* ``page.html``: the demo page at ``GET /``.

Needs the ``serve`` extra: ``pip install -e ".[serve]"`` (FastAPI and uvicorn).
"""
from importlib import import_module

_EXPORTS = {"create_app": "hybridrec.serve.app", "LiveRecommender": "hybridrec.serve.live",
            "Journal": "hybridrec.serve.journal", "JournalError": "hybridrec.serve.journal"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hybridrec.serve' has no attribute {name!r}")
