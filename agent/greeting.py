"""The instant greeting: each business's greeting rendered to phone audio once, through
OpenAI's speech endpoint, and kept in memory, so a caller hears it the moment the stream
starts — before the Realtime session is even connected."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.audio import pcm24k_to_mulaw8k

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)


class GreetingAudio:
    """Rendered greetings by (text, voice). A failed rendering leaves the model to greet."""

    def __init__(self, client: AsyncOpenAI, *, model: str, voice: str) -> None:
        self.client = client
        self.model = model
        self.voice = voice
        self._audio: dict[str, bytes] = {}

    def get(self, text: str) -> bytes | None:
        return self._audio.get(text)

    async def render(self, text: str) -> bytes | None:
        """Render ``text`` once (μ-law 8 kHz); ``None`` when the speech endpoint fails."""
        if text in self._audio:
            return self._audio[text]
        import openai  # loaded with the client; not at import (startup cost)

        try:
            response = await self.client.audio.speech.create(
                model=self.model,
                voice=self.voice,
                input=text,
                response_format="pcm",
                instructions="Warm, calm and unhurried, like a friendly receptionist.",
            )
            pcm = response.content
        except (openai.OpenAIError, OSError) as exc:
            log.warning(
                "greeting audio could not be rendered (%s); the model will greet",
                type(exc).__name__,
            )
            return None
        audio = pcm24k_to_mulaw8k(pcm)
        if not audio:
            return None
        self._audio[text] = audio
        log.info("greeting audio rendered: %d ms", len(audio) // 8)
        return audio
