"""Re-ranking service: query cache (LRU, Redis), engine, FastAPI app, wire schema, client, cache replay.

Modules are imported where used (``distilrel.serve.app`` pulls in FastAPI, the engine torch via the
student), so importing this package costs nothing.
"""
