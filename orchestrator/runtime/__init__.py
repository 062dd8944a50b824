"""The shell: the Faust app and the data plane around the pure engine.

``app.py`` builds the Faust app (the process, its web server with /metrics /health /ready) and
starts ``pipeline.py``, which puts the worker's loops together over one ``context.py``
(settings, clock, health, live definitions, one publisher). The loops, one room each (they go
around Faust's agents and tables: see the README, "Where we go around Faust"):

- ``batches.py``: the consumer-group loop that batches, gates, publishes and commits
  (start here to follow one event), with ``outputs.py`` (pure: results → typed records,
  dead letters);
- ``timer_loop.py`` over ``timers.py`` (the due-timer heap);
- ``campaign_loop.py`` over ``campaigns.py`` (campaign runs);
- ``lag_loop.py`` over ``lag.py``; ``reload.py`` (definition files).

Beside them: ``store.py`` (customer states in memory and their compacted changelog),
``facts_registry.py`` and ``out_topics.py``, ``lag_cli.py``, ``logs.py`` and ``preflight.py``.
"""
