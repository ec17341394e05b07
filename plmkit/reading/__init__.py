"""The reading list: the papers of the field as data (`papers.toml`), each linked by registry name to the
family member or the command that runs it, behind `plmkit papers`.

A room of its own because it reads every other registry — the family (`plmkit.family`) and the command line
(`plmkit.cli`, where the compression and analysis methods are commands) — and belongs to none of them.
"""

from .papers import CATEGORIES, Link, Paper, Status, command, find, load, select, status

__all__ = ["CATEGORIES", "Link", "Paper", "Status", "command", "find", "load", "select", "status"]
