# gpsfleet: gateway, API and alert engine in one image (`docker compose up` runs the stack).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/gpsfleet gpsfleet

USER gpsfleet
WORKDIR /var/lib/gpsfleet
ENV GPSFLEET_DATA_DIR=/var/lib/gpsfleet \
    GPSFLEET_DB=sqlite:////var/lib/gpsfleet/gpsfleet.db

# API, then the gateway's listeners (the defaults in core/settings.py).
EXPOSE 8080 5001 5005 5013 5013/udp 5015 5023 5027 5027/udp

# The API answers: /openapi.json needs no token (readiness with the database is /health).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/openapi.json' % os.environ.get('GPSFLEET_API_PORT', '8080'), timeout=4)"

STOPSIGNAL SIGTERM
ENTRYPOINT ["gpsfleet"]
CMD ["serve"]
