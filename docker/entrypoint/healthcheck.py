"""Health checks of the app image's services (docker-compose.yml), cheap enough to run every few
seconds: none imports dagster (`dagster api grpc-health-check` and `dagster-daemon liveness-check`
take seconds of CPU each, 7-15 s on a busy 2-core machine).

  python /usr/local/bin/healthcheck.py http URL   URL answers 200 (MLflow /health, webserver /server_info)
  python /usr/local/bin/healthcheck.py grpc PORT  the code server answers the standard gRPC health check
                                                   for service "DagsterApi" with SERVING (the question
                                                   `dagster api grpc-health-check` asks)
  python /usr/local/bin/healthcheck.py daemon     every row of daemon_heartbeats in the instance's database
                                                   (DAGSTER_PG_*) was written after this container started
                                                   and at most 300 s ago: each daemon of this process
                                                   heartbeats (what `dagster-daemon liveness-check` reads)
Exit 0 when healthy, 1 otherwise (with the reason on stderr).
"""

import os
import sys
import time

TOLERANCE_SECONDS = 300


def http(url: str) -> str | None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return None if response.status == 200 else f"HTTP {response.status}"


def grpc_health(port: str) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=10
        )
    return None if response.status == health_pb2.HealthCheckResponse.SERVING else f"status {response.status}"


def daemon() -> str | None:
    import psycopg2

    started = os.stat("/proc/1").st_mtime  # pid 1 starts with the container
    connection = psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        port=os.environ["DAGSTER_PG_PORT"],
        user=os.environ["DAGSTER_PG_USERNAME"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname=os.environ["DAGSTER_PG_DB"],
        connect_timeout=5,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("select daemon_type, extract(epoch from timestamp) from daemon_heartbeats")
            rows = cursor.fetchall()
    finally:
        connection.close()
    now = time.time()
    stale = [kind for kind, at in rows if not started <= float(at) <= now + 60 or now - float(at) > TOLERANCE_SECONDS]
    if not rows:
        return "no heartbeat yet"
    return f"stale heartbeats: {', '.join(sorted(stale))}" if stale else None


def main(argv: list[str]) -> int:
    checks = {"http": http, "grpc": grpc_health, "daemon": daemon}
    if not argv or argv[0] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        problem = checks[argv[0]](*argv[1:])
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
