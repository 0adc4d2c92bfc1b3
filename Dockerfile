# Debian 12 (bookworm): its postgresql-client-15 matches docker-compose.yml's postgres:15.
# `ssreg backup` runs pg_dump and `ssreg restore` pg_restore, which must be of the server's
# major version or newer; bookworm's client is 15, a newer Debian's would write dumps a 15
# server is not guaranteed to load.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*

# The service's user (uid 10001: the secret files given to docker compose must be readable
# by it). It owns nothing of the code; it writes only to the volumes under /data, created
# here with that owner so that new named volumes start out owned by it too.
RUN groupadd --system --gid 10001 ssreg \
    && useradd --system --uid 10001 --gid ssreg --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin ssreg \
    && mkdir -p /data/models_store /data/audit \
    && chown -R ssreg:ssreg /data

WORKDIR /srv
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY migrations ./migrations
# Editable: the code runs from /srv, next to migrations/ (`ssreg migrate` reads them there; a
# wheel holds only app/). The pinned versions the test suite passed with.
RUN pip install --no-cache-dir -c constraints.txt -e .

# Bytecode and matplotlib's cache would be written into the (read-only) image otherwise.
ENV REGISTRY_STORE_ROOT=/data/models_store \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
EXPOSE 8000
# Migrations are a deployment step, not part of app start-up: see the `migrate` service.
CMD ["ssreg", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
