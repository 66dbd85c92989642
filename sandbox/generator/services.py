"""The services that send telemetry, the processes that run them, and their SDKs.

Each service runs in every environment in `REPLICAS` processes: an instance. An
instance's columns (name, version, resource attributes and so on) are rendered
once and taken per row by `instance_index`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sandbox.generator.columns import take, text_array
from sandbox.generator.typing import I64


@dataclass(frozen=True)
class Service:
    """One service: who it is, what it is written in, where its code lives."""

    name: str
    namespace: str
    version: str
    language: str
    sdk_version: str
    module: str


SERVICES = (
    Service("api-gateway", "shop", "3.8.2", "nodejs", "2.0.1", "src/routes"),
    Service("checkout", "shop", "1.42.0", "python", "1.38.0", "checkout/service"),
    Service("payments", "billing", "2.7.1", "python", "1.38.0", "payments/charges"),
    Service("inventory", "shop", "0.19.4", "rust", "0.30.0", "src/handlers"),
    Service("worker", "billing", "1.42.0", "python", "1.38.0", "worker/tasks"),
    Service("frontend", "shop", "2026.5.3", "webjs", "2.0.1", "src/app"),
)
SERVICE_INDEX = {service.name: i for i, service in enumerate(SERVICES)}
ENVIRONMENTS: tuple[str | None, ...] = ("prod", "staging", "dev", None)
ENVIRONMENT_WEIGHTS = (0.6, 0.2, 0.1, 0.1)
REPLICAS = 2


def instance_index(service: I64, environment: I64, replica: I64) -> I64:
    """Each row's instance: its place in the `InstanceTable` columns."""
    return (service * len(ENVIRONMENTS) + environment) * REPLICAS + replica


@dataclass(frozen=True)
class InstanceTable:
    """Columns describing each process, indexed by `instance_index`."""

    service_name: pa.Array
    namespace: pa.Array
    version: pa.Array
    instance_id: pa.Array
    sdk_name: pa.Array
    sdk_language: pa.Array
    sdk_version: pa.Array
    environment: pa.Array
    resource: pa.Array
    pid: pa.Array


@functools.cache
def instance_table() -> InstanceTable:
    """Every instance's columns, rendered once."""
    rows: list[dict[str, Any]] = []
    for service in SERVICES:
        for environment in ENVIRONMENTS:
            for replica in range(REPLICAS):
                rows.append(_describe_instance(service, environment, replica))

    def text(key: str) -> pa.Array:
        return text_array([row[key] for row in rows])

    return InstanceTable(
        service_name=text("service_name"),
        namespace=text("namespace"),
        version=text("version"),
        instance_id=text("instance_id"),
        sdk_name=text("sdk_name"),
        sdk_language=text("sdk_language"),
        sdk_version=text("sdk_version"),
        environment=text("environment"),
        resource=text("resource"),
        pid=pa.array([row["pid"] for row in rows], type=pa.int32()),
    )


def _describe_instance(
    service: Service, environment: str | None, replica: int
) -> dict[str, Any]:
    digest = hashlib.sha256(f"{service.name}/{environment}/{replica}".encode()).digest()
    hexed = digest.hex()
    instance_id = "-".join(
        (hexed[:8], hexed[8:12], "4" + hexed[13:16], "8" + hexed[17:20], hexed[20:32])
    )
    browser = service.language == "webjs"
    pid = None if browser else 1000 + int.from_bytes(digest[16:18], "big") % 60_000
    version = {
        "staging": f"{service.version}-rc.1",
        "dev": f"{service.version}+dev.{hexed[40:47]}",
    }.get(environment or "", service.version)

    resource: dict[str, object] = {
        "service.name": service.name,
        "service.namespace": service.namespace,
        "service.version": version,
        "service.instance.id": instance_id,
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": service.language,
        "telemetry.sdk.version": service.sdk_version,
    }
    if environment is not None:
        resource["deployment.environment.name"] = environment
    if browser:
        resource["browser.language"] = ("fr-FR", "ja-JP")[replica]
        resource["browser.platform"] = ("macOS", "Windows")[replica]
    else:
        resource["process.pid"] = pid
        resource["host.name"] = f"{service.name}-{hexed[48:53]}-{hexed[53:58]}"

    return {
        "service_name": service.name,
        "namespace": service.namespace,
        "version": version,
        "instance_id": instance_id,
        "sdk_name": "opentelemetry",
        "sdk_language": service.language,
        "sdk_version": service.sdk_version,
        "environment": environment,
        "resource": json.dumps(resource, ensure_ascii=False),
        "pid": pid,
    }


SCOPES: dict[str, tuple[str, str | None]] = {
    "logfire": ("logfire", "5.4.0"),
    "fastapi": ("opentelemetry.instrumentation.fastapi", "0.59b0"),
    "httpx": ("opentelemetry.instrumentation.httpx", "0.59b0"),
    "sqlalchemy": ("opentelemetry.instrumentation.sqlalchemy", "0.59b0"),
    "celery": ("opentelemetry.instrumentation.celery", "0.59b0"),
    "node-http": ("@opentelemetry/instrumentation-http", "0.203.0"),
    "fetch": ("@opentelemetry/instrumentation-fetch", "0.203.0"),
    "document-load": ("@opentelemetry/instrumentation-document-load", "0.48.0"),
    "tracing": ("tracing-opentelemetry", "0.31.0"),
    "sqlx": ("sqlx", None),
    "reqwest": ("reqwest-tracing", "0.5.8"),
    "system-metrics": ("opentelemetry.instrumentation.system_metrics", "0.59b0"),
    "node-runtime": ("@opentelemetry/instrumentation-runtime-node", "0.17.0"),
    "shop-metrics": ("shop.metrics", "1.0.0"),
}
"""The instrumentation scopes rows come from: each key's name and version."""


def instance_columns(source: I64) -> dict[str, pa.Array]:
    """The columns both tables take from the instance that sent each row."""
    instances = instance_table()
    return {
        "service_name": take(instances.service_name, source),
        "service_namespace": take(instances.namespace, source),
        "service_version": take(instances.version, source),
        "service_instance_id": take(instances.instance_id, source),
        "telemetry_sdk_name": take(instances.sdk_name, source),
        "telemetry_sdk_language": take(instances.sdk_language, source),
        "telemetry_sdk_version": take(instances.sdk_version, source),
        "deployment_environment": take(instances.environment, source),
    }
