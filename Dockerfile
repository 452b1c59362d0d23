# The application image: the `sentinel` command line, the dataflow and the API.
# Bytewax 0.21 ships wheels for glibc and CPython <= 3.12 only, hence Debian slim 3.12.

# The dashboard's front-end packages, from the committed lock file (no build step: the
# API serves lightweight-charts' standalone file as it is installed).
FROM node:20.20.2-bookworm-slim AS dashboard
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.12.8-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/app.lock ./requirements/app.lock
COPY sentinel ./sentinel
COPY dataflows ./dataflows
COPY connectors ./connectors
COPY online_models ./online_models
COPY api ./api
COPY timescale ./timescale
COPY grafana ./grafana
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements/app.lock \
    && /opt/venv/bin/pip install --no-deps .

FROM python:3.12.8-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SENTINEL_HOME=/var/lib/sentinel
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/sentinel sentinel \
    && install -d -o sentinel -g sentinel /var/lib/sentinel/journal /var/lib/sentinel/recovery \
        /var/lib/sentinel/archive
COPY --from=build /opt/venv /opt/venv
COPY docs /opt/sentinel/docs
COPY --from=dashboard /src/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js /opt/sentinel/vendor/
USER sentinel
WORKDIR /var/lib/sentinel
ENTRYPOINT ["sentinel"]
CMD ["--help"]
