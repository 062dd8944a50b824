"""Worker logging: JSON lines on request, no floods during outages, no customer ids in clear.

- :func:`logging_config`: Faust's ``logging_config`` (a dictConfig) for ``ORCH_LOG_FORMAT=json``.
- :class:`RateLimit`: a logging filter that lets each distinct message template through
  at most once per interval and says how many it held back. Installed on the Kafka
  client's loggers (aiokafka logs every failed reconnect: a 35 s broker outage wrote
  32,000-50,000 lines before) and on our own retry warnings.
- :func:`pseudonym`: a keyed hash of a customer id for log lines (``c-1a2b3c4d5e6f``);
  the same customer always gets the same pseudonym under one key, so lines can be
  correlated, but the id cannot be read back. The key is ``ORCH_PSEUDONYM_KEY`` (a secret:
  the group name would let anyone recompute a guessed customer's pseudonym). :func:`redact`
  replaces the ids a message is known to carry (its key, its customer id) in texts that are
  logged, such as a dead letter's reason. The dead-letter topic (a data topic with the same
  access rules as the inbound ones) carries the real id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from orchestrator.settings import Settings

NOISY_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "orchestrator.dependency")
"""Loggers whose warnings repeat while a dependency is down: rate-limited. (Dead letters and bugs are not.)"""


def pseudonym(customer_id: str, key: bytes) -> str:
    """A stable, non-reversible stand-in for a customer id in logs."""
    return "c-" + hashlib.blake2b(customer_id.encode(), key=key[:64], digest_size=6).hexdigest()


def redact(text: str, ids: Iterable[str | None], key: bytes) -> str:
    """``text`` with every occurrence of each of ``ids`` (customer ids, message keys) replaced by its pseudonym."""
    for raw in sorted({i for i in ids if i}, key=len, reverse=True):  # longest first: an id inside another stays whole
        text = text.replace(raw, pseudonym(raw, key))
    return text


class RateLimit(logging.Filter):
    """Pass each (logger, message template) at most once per ``interval`` seconds; count the rest."""

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(NOISY_LOGGERS):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval:.0f}s not logged)"
        return True


def install_rate_limits(interval: float = 30.0) -> RateLimit:
    """Rate-limit the repeating warnings (see :data:`NOISY_LOGGERS`) on every handler of the root logger.

    On the handlers, not the loggers: a logger's filter does not see its children's records
    (``aiokafka.consumer.fetcher`` ...). Call it once logging is configured (Faust does that
    when the worker starts).
    """
    flt = RateLimit(interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


def logging_config(settings: Settings) -> dict[str, Any] | None:
    """Faust's ``logging_config`` (a dictConfig) for JSON logs, or None for Faust's default text logs."""
    if settings.log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["stdout"], "level": settings.log_level.upper()},
    }
