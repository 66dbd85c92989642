"""Synthetic telemetry shaped like what Logfire stores.

Records are traces of nested spans, logs and span events from a handful of
services; metrics are points of all four metric types. Everything is built over
whole columns with numpy and Arrow compute, from small vocabularies of
pre-rendered text, so millions of rows take seconds.

Timing follows Logfire's storage rules. A span is stored (`created_at`) a few
seconds after it ends, some minutes later, and long batch jobs hours after they
began. Spans and logs leave a service in export batches whose rows share one
`created_at`; span events are stored with their span. A few browsers' clocks run
ahead of the server. For every row `created_at - 24 h <= start_timestamp <=
created_at + 1 h`, and `_visible_at` falls within 5 minutes after `created_at`.

The modules, from the fixed tables up:

- `services`: the services, their processes (instances) and SDK scopes.
- `vocabulary`: template parameter values, extra attributes, tags, statuses.
- `failures`: the exceptions traces raise, with their stack traces.
- `templates`: the shapes of the traces each service produces.
- `record_catalog`: the templates compiled into columns.
- `traces`: traces drawn from the templates, laid out as rows and timed.
- `records`: the `records` table, planned and rendered.
- `metric_catalog`: the metrics each service exports, and their series.
- `metrics`: the `metrics` table, planned and rendered.
- `timing`, `columns`, `tables`, `typing`: what the others share (storage
  delays and export batches, Arrow column helpers, the parallel build, array
  types).
"""

from __future__ import annotations

from sandbox.generator.metrics import generate_metrics
from sandbox.generator.records import generate_records

__all__ = ["generate_metrics", "generate_records"]
