"""The native `seqserve.v1.SeqServe` front."""
