"""Helpers for the web config tests: certificates made with the openssl command, a tiny TLS app, TLS clients."""
