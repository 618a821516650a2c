"""The paper-experiment scripts, run from the repository root as modules::

    python -m experiments.compare --quick
    python -m experiments.paired experiments/results/cpu/compare/a+b

Shared helpers are in :mod:`experiments._common` (not a public API).
"""
