"""The worker's Faust app, configured from the environment.

Faust CLI convention: ``faust -A orchestrator.runtime.worker worker -l info`` works
as well as ``orchestrator worker``.
"""

from orchestrator.runtime.app import create_app
from orchestrator.settings import Settings

settings = Settings()
app = create_app(settings)
