# Factory Bridge — production image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/bridge.db \
    BRIDGE_HTTP_HOST=0.0.0.0 \
    BRIDGE_HTTP_PORT=8080

RUN groupadd --system bridge && useradd --system --gid bridge --home-dir /app bridge

WORKDIR /app
COPY pyproject.toml README.md ./
COPY batching ./batching
COPY bot ./bot
COPY escalation ./escalation
COPY sandbox ./sandbox
# the emulators ship in the wheel (for `factory-bridge sandbox`) but not in the image
RUN pip install . && rm -rf ./sandbox \
    && rm -rf "$(cd / && python -c 'import os, sandbox; print(os.path.dirname(sandbox.__file__))')" \
    && mkdir -p /data && chown bridge:bridge /data

USER bridge
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRIDGE_HTTP_PORT', '8080'), timeout=4)" || exit 1

CMD ["factory-bridge", "run"]
