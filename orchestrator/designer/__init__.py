"""The journey designer's tools.

``validate``, ``simulate``, ``render`` and the JSON Schemas run the product core offline
(the real engine, the in-memory twin of the basket) and never touch Kafka or Redis.
``report`` and ``explain`` read what a running system wrote: the journey log and the
decisions topic (``report`` also reads ``simulate --json`` output).
"""
