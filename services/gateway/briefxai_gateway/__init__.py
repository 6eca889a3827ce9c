"""The BriefXAI gateway: the public ``AnalysisService``, long-running analyses over the facets,
embedding and clustering services, with a SQL store as its only state.

Where things are:

- ``models.py``: domain types; ``settings.py``: the ``gateway`` config section.
- ``validation.py``: input and option checks with field paths; ``embed_text.py``: which text is embedded.
- ``pipeline.py``: facets -> embed -> cluster -> store for one analysis, resumable from checkpoints;
  past the clustering service's ``max_vectors`` it fits on a seeded sample and assigns the rest.
- ``manager.py``: the façade the servicer calls (create/upload/get/list/watch/cancel/delete/results)
  over ``intake.py`` (option resolution), ``uploads.py`` (streamed batches), ``scheduler.py``
  (admission, queue, resume at startup, the analysis leases of gateways sharing a store),
  ``outages.py`` (analyses wait out a downstream that is down) and ``paging.py`` (page sizes and
  tokens).
- ``store/`` / ``schema.py`` / ``migrations/``: SQLAlchemy Core data access (SQLite or PostgreSQL;
  ``store/leases.py``), tables, Alembic scripts.
- ``assigner.py``: AssignConversations, new conversations into a finished analysis as a new revision of
  its results, over ``batching.py`` (facets and embeddings batch by batch, shared with the pipeline),
  ``centroids.py`` (nearest base cluster, the threshold) and ``revisions.py`` (what a revision
  reports, the privacy rule on what it adds).
- ``distributions.py``: facet distributions per cluster; ``progress.py``: current stage, live rate
  and ETA; ``analysis_warnings.py``: warnings as people read them.
- ``concurrency.py``: ``in_thread``, blocking store calls from async code.
- ``performance.py``: the performance report's figures and rules (GetPerformanceReport);
  ``sampler.py``: the history behind it (samples, finished runs, retention) kept in the store.
- ``downstream.py`` (interfaces) and ``clients.py`` (gRPC, deadlines, retries, circuit breakers).
- ``health_watch.py``: the downstreams' grpc.health.v1 status, followed with Watch streams.
- ``convert.py`` + ``servicer.py``: protobuf <-> domain; ``server.py``: ``build_service(settings)``.
"""
