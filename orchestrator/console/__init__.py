"""``orchestrator console``: a read-only live journey console, a process of its own.

It reads the journey-log, decisions and dead-letter topics from their beginning and then live
(a consumer without a group, like ``orchestrator report``), keeps counts in memory
(:mod:`orchestrator.console.state`), reads the consumer group's lag every few seconds
(:class:`~orchestrator.runtime.lag.LagProbe` and :class:`~orchestrator.runtime.time_lag.TimeLag`)
and serves server-rendered pages behind a bearer token (:mod:`orchestrator.console.app`):

- :mod:`~orchestrator.console.state`: the aggregates (bounded: counts, and for each live journey
  instance only its current step and split variants, dropped when the instance ends);
- :mod:`~orchestrator.console.layout`: a journey map as a layered layout, drawn as SVG;
- :mod:`~orchestrator.console.pages`: the HTML pages and the numbers their script refreshes;
- :mod:`~orchestrator.console.app`: the aiohttp application, the token and the session cookie;
- :mod:`~orchestrator.console.feed`: the Kafka reader, the lag loop, the journey files;
- :mod:`~orchestrator.console.cli`: the command.
"""
