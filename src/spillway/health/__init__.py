"""Liveness, readiness and the start checks, for any app on the runtime."""
