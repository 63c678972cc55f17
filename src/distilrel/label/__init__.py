"""Pseudo-labelling: the unlabelled pool and the teacher's soft labels.

pool.py         search logs + training queries → (query, doc) pairs by first-stage retrieval; eval-query
                texts of every dataset are kept out
logs.py         a user's log table or UBI events → (query, doc_id, engagement)
shards.py       shard plan, manifest and shard files (atomic, checked on resume)
job.py          the in-process, batched, resumable labelling job
ray_backend.py  the same job on Ray Data (actor pool, the teacher loaded once per actor)
"""
