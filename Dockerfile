# The operator image: slim, non-root, with the PostgreSQL client tools (pg_dump/psql 18 restore into
# 15-18 servers; 15's own tools are used for 15-to-15 copies).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir -c constraints.txt '.[dev]' && useradd --uid 10001 --no-create-home envbranch
USER 10001
ENTRYPOINT ["python", "-m", "envbranch"]
