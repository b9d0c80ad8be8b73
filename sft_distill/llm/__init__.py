"""Talking to OpenAI-compatible endpoints: transport, retries, limits, cache, prompts, parsing."""
