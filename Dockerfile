# syntax=docker/dockerfile:1
# One image for every service of the access layer; docker-compose.yml chooses the process
# with `command:`. Build alone: docker build -t legacycointrader-access .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtual environment with the dependencies and the project --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, from the lock alone, so a code change reuses this layer: the runtime
# ones only (not the dev extras: the local runner honcho, the test tools), each at its pinned
# version and checked against its hashes, so two builds install the same files. `make lock`
# refreshes requirements.lock from pyproject.toml.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
# The project, installed in place (as `make install` does): the code reads
# config/managed_secrets.yaml, the migrations and the templates from the repository layout,
# which the runtime stage keeps at the same path.
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps --editable .

# --- runtime: slim Python, the venv and the source tree; no compiler, not root ---------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Files stay root-owned, so they are read-only to `app`; only var/ is writable, and the
# mount points of the vault-unseal and vault-credentials-* volumes, which a new volume takes
# its owner and mode from: vault-init (as `app`) writes the AppRole credentials there, 0600,
# and each service (as `app` too) reads its own folder, mounted at /run/vault-credentials.
# vault-init also writes the metrics scrape token to the prometheus folder, which Prometheus
# (run as this uid) reads.
COPY . /app
RUN mkdir -p /app/var /var/lib/vault-unseal /run/vault-credentials \
      /var/lib/vault-credentials/gateway /var/lib/vault-credentials/portfolio \
      /var/lib/vault-credentials/frontend /var/lib/vault-credentials/stub \
      /var/lib/vault-credentials/prometheus \
 && chown -R app:app /app/var /var/lib/vault-unseal /var/lib/vault-credentials \
      /run/vault-credentials \
 && chmod 700 /var/lib/vault-unseal /run/vault-credentials /var/lib/vault-credentials \
      /var/lib/vault-credentials/gateway /var/lib/vault-credentials/portfolio \
      /var/lib/vault-credentials/frontend /var/lib/vault-credentials/stub \
      /var/lib/vault-credentials/prometheus
USER 10001:10001
EXPOSE 8000
# Every service listens on 0.0.0.0 inside its own container; compose sets the command.
CMD ["python", "-m", "uvicorn", "services.api_gateway.app:app", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers", "--no-access-log", "--ws", "none", "--http", "shared.protocol:HttpProtocol"]
