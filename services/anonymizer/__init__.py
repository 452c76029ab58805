"""The anonymizer service: Diffusion-DP over gRPC (`python -m services.anonymizer`)."""
