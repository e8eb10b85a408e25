"""Abuse and hostile-input defences the runtime puts around every app: rate limits per
address, caps on requests held open, the trusted proxy hop, security headers
(spillway.pipeline installs them). SECURITY.md has the threat model and each test.
"""
