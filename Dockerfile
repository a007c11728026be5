# depin worker and coordinator image (amd64 and arm64: python:3.11-slim and numba both publish for both).
#   docker build -t depin .
#   docker run -v depin-worker:/data depin worker --coordinator http://HOST:8642 --data-dir /data
#   docker run -p 8642:8642 -v depin-coord:/data depin coordinator --data-dir /data --host 0.0.0.0
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 depin \
    && mkdir /data && chown depin:depin /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY depin ./depin
COPY coordinator ./coordinator
COPY worker ./worker
RUN pip install --no-cache-dir . && rm -rf /src

USER depin
WORKDIR /home/depin
VOLUME ["/data"]
EXPOSE 8642
ENTRYPOINT ["depin"]
CMD ["--help"]
