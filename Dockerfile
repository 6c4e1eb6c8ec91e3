# prik: one image for every role (router, consumer, operators' commands), `prik` as entrypoint.
#   docker build -t prik:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The wheels of every dependency (confluent-kafka's bundles librdkafka) need no compiler.
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY producers ./producers
COPY broker ./broker
COPY consumers ./consumers
COPY deploy ./deploy
COPY prik ./prik
RUN pip install . && rm -rf /src

# A fixed uid, so Kubernetes' runAsNonRoot/runAsUser (deploy/k8s/prik.yaml) can match it;
# its home holds the compose file's generated secrets (a named volume takes its owner).
RUN groupadd --system --gid 10001 prik \
    && useradd --system --uid 10001 --gid prik --home-dir /var/lib/prik --create-home prik \
    && install -d -o prik -g prik -m 0700 /var/lib/prik/secrets
USER 10001:10001
WORKDIR /var/lib/prik

ENTRYPOINT ["prik"]
CMD ["--help"]
