"""Model backends: local transformers models, OpenAI-compatible endpoints, and the catalog."""
