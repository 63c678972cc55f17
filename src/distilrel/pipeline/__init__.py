"""``distilrel run CONFIG.toml``: the whole pipeline as one command.

config.py   the pipeline TOML (one section per stage) as frozen dataclasses, checked before any work
context.py  RunContext: config, run folder, console, datasets loaded once
stages.py   one function per stage, each calling that stage's own module
costs.py    serving latency (query encoding, re-ranking 100 candidates: teacher vs student)
runner.py   the stage graph, fingerprints, stamps, skip / resume
report.py   runs/<name>/report.md + PNGs
transfer.py ``distilrel transfer``: the cross-lingual transfer experiment (train English, test all)
"""
