"""The conversation: Realtime session core, tools, summary extraction, scripted intake."""
