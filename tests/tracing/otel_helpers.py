"""Reading an InMemoryMetricReader in tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

Points = dict[frozenset[tuple[str, Any]], float]


def points(reader: InMemoryMetricReader, name: str) -> Points:
    """``{attributes: value}`` of every data point of metric ``name`` (empty when absent)."""
    found: Points = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = point.value  # type: ignore[union-attr]
                        found[frozenset((point.attributes or {}).items())] = value
    return found


def point(reader: InMemoryMetricReader, name: str, **attributes: Any) -> float:
    """The value at exactly these attributes (``a.b`` spelt ``a__b``), 0 when absent."""
    key = frozenset((k.replace("__", "."), v) for k, v in attributes.items())
    return points(reader, name).get(key, 0)
