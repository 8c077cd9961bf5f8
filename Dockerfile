# The wdm-replay image for deploy/k8s (and any container host): a slim Python base with this project
# pip-installed (uvloop comes with it). Build from the repository root:
#   docker build -t registry.example.org/wdm-replay:latest . && docker push registry.example.org/wdm-replay:latest
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY wdmreplay ./wdmreplay
RUN pip install . && rm -rf /src && useradd --create-home --uid 10001 wdm
USER 10001
WORKDIR /home/wdm
ENTRYPOINT ["wdm-replay"]
CMD ["--help"]
