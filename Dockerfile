# The operator image: slim, non-root, with the PostgreSQL client tools of every supported server
# major (15 to 18) from the PostgreSQL project's apt repository. envbranch picks, per server, the
# lowest client major >= the server's (see envbranch.postgres.tools).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg postgresql-common \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends postgresql-client-15 postgresql-client-16 \
      postgresql-client-17 postgresql-client-18 \
 && apt-get purge -y curl gnupg && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
# Runtime dependencies only (no test tools), pinned by constraints.txt.
RUN pip install --no-cache-dir -c constraints.txt . && useradd --uid 10001 --no-create-home envbranch
USER 10001
ENTRYPOINT ["python", "-m", "envbranch"]
