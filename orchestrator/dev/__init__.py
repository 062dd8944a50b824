"""The development harness: the demo, worker child processes, small Kafka helpers and the
synchronous engine driver used by tests and benchmarks. Nothing here runs in production.
"""
