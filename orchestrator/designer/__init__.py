"""The journey designer's tools: ``validate``, ``simulate``, ``render`` and the JSON Schemas.

They run the product core offline (the real engine, the in-memory twin of the basket)
and never touch Kafka or Redis.
"""
