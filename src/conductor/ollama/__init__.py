"""The Ollama face: /api/chat, /api/generate, /api/embed, model management."""
