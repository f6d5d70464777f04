# edgec in a container: the package, the Cortex-M toolchain, and a smoke test.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ gcc-arm-none-eabi libnewlib-arm-none-eabi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edgec
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && edgec --help && edgec targets

WORKDIR /work
ENTRYPOINT ["edgec"]
CMD ["--help"]
