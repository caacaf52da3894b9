"""Reading the ``<Stream>`` a voice webhook answered with, as Twilio does, for tests that
drive the Media Stream websocket by hand."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def stream_parameters(twiml: str) -> dict[str, str]:
    """The ``<Parameter name value>`` pairs of the ``<Stream>`` in ``twiml`` — what Twilio
    echoes as ``start.customParameters``."""
    root = ET.fromstring(twiml)  # noqa: S314 - our own service's TwiML
    stream = root.find("./Connect/Stream")
    assert stream is not None, twiml
    return {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
