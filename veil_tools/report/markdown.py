"""Markdown helpers the report's sections share."""

from __future__ import annotations


def cell(text: str) -> str:
    """`text` inside a markdown table cell: a pipe would end the cell and a newline the row
    (row names hold pipes, "|acc change|"; error messages may hold either)."""
    return text.replace("|", "\\|").replace("\n", " ")
