"""The registry of claims and generated tables (``experiments/claims.py``).

Each module registers the claims of some sections of RESULTS.md into
:data:`base.CLAIMS` / :data:`base.TABLES`; importing this package loads all.
"""
from experiments._claims import (  # noqa: F401 (they register)
    amplifier, cpu, cpu_more, cross, meta_muon, paper, paper_tables, rule,
    rule_snr,
    studies, summary)
from experiments._claims.base import (ARCHIVE, CLAIMS, EXEMPT, NON_DATA,
                                      TABLES, Claim, Data, Table)

__all__ = ["ARCHIVE", "CLAIMS", "TABLES", "EXEMPT", "NON_DATA", "Claim", "Table", "Data"]
