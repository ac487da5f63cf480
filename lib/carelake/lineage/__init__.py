"""OpenLineage lineage of every run: stage events, the Spark listener, questions and the page."""
