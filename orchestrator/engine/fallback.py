"""Content per channel on fallback: the send tried on the next ``on_capped: fallback`` channel.

A fallback channel is a name (``sms``: the step's template and variables) or an entry with
content of its own (``{channel: email, template: cc_script_email, variables: {...}}``: that
template, and the step's variables with the entry's added over them). Which entry comes
next follows from the channels the send still has to try (``Send.fallback_channels``, the
remaining ones), so nothing new is stored in the state.
"""

from __future__ import annotations

from orchestrator.actions import Send
from orchestrator.engine.draft import Draft
from orchestrator.engine.ids import send_id
from orchestrator.engine.steps import send_variables
from orchestrator.fastmodel import fast_copy
from orchestrator.journey import model as m
from orchestrator.state import Instance


def fallback_send(draft: Draft, inst: Instance, step_def: m.SendStep, send: Send) -> Send:
    """``send`` (capped or suppressed) tried on its next fallback channel, with that channel's template and variables."""
    remaining = send.fallback_channels
    channel = remaining[0]
    changes: dict[str, object] = {
        "send_id": send_id(draft.customer_id, inst, inst.step, channel, step_def, 0),
        "channel": channel,
        "fallback_channels": list(remaining[1:]),
    }
    entries = step_def.on_capped.channels
    index = len(entries) - len(remaining)
    journey = draft.journeys.get(inst.journey_id, inst.version)
    if journey is not None and 0 <= index < len(entries) and any(not isinstance(e, str) for e in entries):
        entry = step_def.on_capped.fallback(index)  # content per channel: from the step's, whatever the last channel had
        changes["template"] = entry.template or step_def.template
        changes["variables"] = {**send_variables(draft, inst, journey, inst.step, step_def), **entry.variables}
    return fast_copy(send, **changes)
