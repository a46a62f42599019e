"""The KServe v2 / Triton `inference.GRPCInferenceService` front."""
