"""The `distilrel` command: one sub-command per stage of the data flow."""

from __future__ import annotations

import typer

from distilrel.cli import data as data_cmd
from distilrel.cli.baselines import baselines
from distilrel.cli.caption import caption
from distilrel.cli.evaluate import compare, evaluate
from distilrel.cli.label import label, logs_app
from distilrel.cli.run import run
from distilrel.cli.serve import cache_app, embed, index_app, serve
from distilrel.cli.student import app as student_app
from distilrel.cli.teacher import app as teacher_app
from distilrel.cli.transfer import transfer

app = typer.Typer(
    name="distilrel",
    help="Relevance teacher → pseudo-labels → distilled bi-encoder student → cached re-ranking service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_cmd.app, name="data")
app.command()(evaluate)
app.command()(compare)
app.command()(baselines)
app.add_typer(teacher_app, name="teacher", help="Train a K-level cross-encoder teacher and predict with it.")
app.add_typer(logs_app, name="logs", help="Build the unlabelled (query, document) pool from search logs.")
app.command()(label)
app.command()(caption)
app.add_typer(student_app, name="student", help="Distil the teacher into a bi-encoder student.")
app.command()(embed)
app.add_typer(index_app, name="index", help="Build the FAISS index over the embedding store.")
app.command()(serve)
app.add_typer(cache_app, name="cache", help="Query-cache tools (replay a query stream).")
app.command()(run)
app.command()(transfer)


if __name__ == "__main__":
    app()
