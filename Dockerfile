# One image for the four NTBCare services (and the Graph API sandbox for the dev profile).
# Multi-stage: dependencies are built in a throwaway stage; the runtime runs as a non-root user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Only the run-time lock: no test or lint tools (pytest, selenium, hadolint …) in the image.
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements.lock
COPY shared ./shared
COPY services ./services
COPY sandbox ./sandbox
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 ntbcare \
    && useradd --system --uid 10001 --gid ntbcare --home-dir /app ntbcare \
    && mkdir -p /app /data/media && chown -R 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 NTBCARE_DATA_DIR=/data
USER 10001:10001
EXPOSE 8000
# The service to run is the argument, exactly as in the Procfile: python -m shared.runner <service>
ENTRYPOINT ["python", "-m"]
CMD ["shared.runner", "intake"]
