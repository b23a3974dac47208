"""Reliability and security checks that need no Ray cluster (issue 9)."""
