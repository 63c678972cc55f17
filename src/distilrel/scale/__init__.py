"""What the batch jobs (label, caption, embed) share to run in-process or on a Ray cluster.

progress.py  the rich progress bar with items/s
ray.py       a Ray session, and shards of a table mapped over an actor pool with Ray Data
"""
