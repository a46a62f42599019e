"""`python -m bench` (what `make bench` runs): seqserve against its compute and transport ceilings."""
