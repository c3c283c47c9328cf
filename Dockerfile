FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git bubblewrap && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY system system
COPY orchestrator orchestrator
COPY fleet fleet
COPY workers workers
COPY verification verification
COPY db db
RUN pip install --no-cache-dir .
RUN useradd --create-home fleet
USER fleet
ENV FLEET_HOME=/home/fleet/.fleet
ENTRYPOINT ["fleet"]
