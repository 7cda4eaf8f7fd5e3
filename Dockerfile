# LLM Router: the Functions app image for Azure Functions on Azure Container Apps.
# Build:  docker build -t llm-router:dev .
# Run:    docker run -p 8080:8080 --env-file .env llm-router:dev   (then GET /health/live)
FROM mcr.microsoft.com/azure-functions/python:4-python3.11

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASPNETCORE_URLS=http://+:8080 \
    OPENBLAS_NUM_THREADS=1 \
    FUNCTIONS_WORKER_RUNTIME=python \
    PYTHON_ENABLE_INIT_INDEXING=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc

# FUNCTIONS_WORKER_RUNTIME + PYTHON_ENABLE_INIT_INDEXING: the Python 3.11 worker indexes the app at
# start, which HTTP streaming needs (without it every HTTP function hangs in Azure). infra/main.bicep
# sets both as app settings too. PROMETHEUS_MULTIPROC_DIR: the worker processes
# (FUNCTIONS_WORKER_PROCESS_COUNT) write their metrics there and /metrics aggregates them all.

# Dependencies first, in their own layer: it is rebuilt only when requirements.txt changes.
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt

# Non-root. The base image runs the host as root on port 80; as an unprivileged user the host
# listens on 8080 (ASPNETCORE_URLS above; the app setting WEBSITES_PORT=8080 tells the
# platform, see infra/main.bicep) and may write only where it must: its secrets sentinel
# directory, /home (logs, data) and /tmp. The code itself stays root-owned and read-only.
# Fallback if a future base image breaks this: drop the USER line, ASPNETCORE_URLS and
# WEBSITES_PORT, and the host runs as root on 80 as the base image intends.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /home --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /azure-functions-host/Secrets /home/LogFiles /home/data /tmp/prometheus-multiproc \
    && chown -R app:app /azure-functions-host/Secrets /home/LogFiles /home/data /tmp/prometheus-multiproc

# The code last (.dockerignore keeps tests, docs, infra, bench and local state out).
COPY . /home/site/wwwroot

USER 10001:10001
EXPOSE 8080

# No Docker HEALTHCHECK: Container Apps ignores it (health comes from the platform's own probes
# and the Functions host), and a curl-style check would only add a binary to the image. For a
# local container, poll GET /health/live.
HEALTHCHECK NONE
