"""Layer 5 of 7: reading run folders: metric rows and summaries, statistics,
plots, reports."""
