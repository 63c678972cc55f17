"""``from distilrel.client import Client``: the Python client of ``distilrel serve``."""

from __future__ import annotations

from distilrel.serve.client import Client, ServiceError

__all__ = ["Client", "ServiceError"]
