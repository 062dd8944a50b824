"""The journey language: the file model, conditions, durations and the loader.

Journey designers write ``journeys/*.yaml``; :func:`orchestrator.journey.loader.load_journeys`
turns them into a :class:`~orchestrator.journey.loader.JourneySet` the engine runs.
"""
