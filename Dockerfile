# The orchestrator worker image (used by docker-compose.yml's `worker`).
# Every runtime dependency (faust-streaming, aiokafka, pydantic-core, redis,
# PyYAML) ships a manylinux wheel for CPython 3.11, so no compiler is needed.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Install the package first so the dependency layer is reused while only
# journeys change.  README.md is named by pyproject.toml, so it must be present.
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
RUN pip install . \
 && useradd --system --create-home --home-dir /home/orchestrator orchestrator \
 && mkdir -p /data \
 && chown orchestrator /data

COPY journeys ./journeys

USER orchestrator

# Settings are ORCH_* environment variables (see orchestrator/settings.py);
# the two connection strings are overridden by docker-compose.yml.
ENV KAFKA_BOOTSTRAP_SERVERS=kafka:19092 \
    REDIS_URL=redis://redis:6379/0 \
    ORCH_JOURNEYS_DIR=/app/journeys \
    ORCH_DATA_DIR=/data \
    ORCH_WEB_HOST=0.0.0.0 \
    ORCH_WEB_PORT=6066

EXPOSE 6066
VOLUME ["/data"]

CMD ["orchestrator", "worker"]
