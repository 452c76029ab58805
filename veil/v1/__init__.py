"""Generated gRPC stubs of the veil.v1 API (make proto). Do not edit."""
