"""The contact-pressure basket: policy, the Redis Lua gate and its in-memory twin.

The semantics are specified once, in the docstring of :mod:`orchestrator.pressure.policy`.

* ``policy``: the ``pressure.yaml`` model, loader and JSON Schema.
* ``periods``, ``costs``, ``consent``: the pure rules (period of a moment, cost of a send, suppressions).
* ``planner``: one gate request planned (all policy math), shared by both baskets.
* ``records``: the stored spend and decision records and their reason texts.
* ``basket``: the :class:`~orchestrator.pressure.basket.Basket` interface;
  ``redis_basket`` (+ ``gate.lua``) and ``memory`` implement it.
* ``cli``: ``orchestrator basket show``.
"""
