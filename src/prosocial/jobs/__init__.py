"""Jobs over whole corpora: label or answer every dialogue of many shards, in one process or on a Ray cluster."""

from prosocial.jobs.corpus import CorpusReport, check_rows, list_shards, respond_rows, run_corpus

__all__ = ["CorpusReport", "check_rows", "list_shards", "respond_rows", "run_corpus"]
