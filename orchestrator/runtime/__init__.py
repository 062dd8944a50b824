"""The shell: the Faust app and the data plane around the pure engine.

``app.py`` builds the Faust app (the process, its web server with /metrics /health /ready) and
starts ``pipeline.py``, the consumer-group loop that batches, gates, publishes and commits (it
goes around Faust's agents and tables: see the README, "Where we go around Faust"). Beside it:
``store.py`` (customer states in memory and their compacted changelog), ``timers.py`` (the
due-timer heap), ``campaigns.py`` (campaign runs), ``facts_registry.py`` and ``out_topics.py``,
``lag.py`` and ``lag_cli.py``, ``logs.py`` and ``preflight.py``.
"""
