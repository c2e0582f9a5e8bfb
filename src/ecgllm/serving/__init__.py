"""Serving: the HTTP API and the page (`ecgllm serve`)."""
