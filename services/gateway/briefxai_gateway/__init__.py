"""The BriefXAI gateway: the public ``AnalysisService``, long-running analyses over the facets,
embedding and clustering services, with a SQL store as its only state.

Where things are:

- ``models.py``: domain types; ``settings.py``: the ``gateway`` config section.
- ``validation.py``: input and option checks with field paths; ``embed_text.py``: which text is embedded.
- ``pipeline.py``: facets -> embed -> cluster -> store for one analysis, resumable from checkpoints.
- ``manager.py``: admission, scheduling, resume at startup, get/list/watch/cancel/delete/results.
- ``store.py`` / ``schema.py`` / ``migrations/``: SQLAlchemy Core data access, tables, Alembic scripts.
- ``distributions.py``: facet distributions per cluster; ``progress.py``: live rate and ETA.
- ``downstream.py`` (interfaces) and ``clients.py`` (gRPC, deadlines, retries, circuit breakers).
- ``convert.py`` + ``servicer.py``: protobuf <-> domain; ``server.py``: ``build_service(settings)``.
"""
