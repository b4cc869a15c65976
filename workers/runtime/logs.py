"""Structured logs: one JSON object per line on stdout, so CloudWatch Logs Insights can filter
on ``job_id``/``worker``/``attempt`` without parsing free text.

The schema and its writer live in ``jobcontract.logs`` (shared with the Lambda handlers, so
both write the same fields and honour the same ``BATCH_LOG_LEVEL``); this module keeps the
name worker code imports.
"""

from __future__ import annotations

from jobcontract.logs import JsonLogger

__all__ = ["JsonLogger"]
