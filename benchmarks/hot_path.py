"""Per-frame CPU of the relay's sans-I/O cores, in process, for one tree or several.

The load benchmark (``load.py``) measures the whole server, but on a machine whose speed
drifts between runs it cannot resolve a few per cent. This times only the pure-Python work
each frame costs in the cores, which does not depend on sockets or scheduling: the best of
several repeats of many iterations, each tree in its own interpreter, run back to back.

- caller frame: Twilio's ``media`` text → ``MediaStreamProtocol.receive`` → the model's
  ``input_audio_buffer.append`` text;
- model delta: the model's ``response.output_audio.delta`` event (already parsed) →
  ``Conversation.server_event`` → the Twilio ``media`` frame (and a ``mark`` when one is due).

Usage: python benchmarks/hot_path.py [DIR ...]   (default: this tree)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import base64, json, sys, timeit
from agent.realtime_core import Conversation, PlayAudio, SessionConfig, caller_audio_message
from telephony.media_streams import AudioReceived, MediaStreamProtocol

SID = "MZ" + "1" * 32
protocol = MediaStreamProtocol()
protocol.receive(json.dumps({"event": "start", "streamSid": SID,
    "start": {"streamSid": SID, "callSid": "CA" + "2" * 32, "customParameters": {}}}))
payload = base64.b64encode(bytes(range(160))).decode()
frame = ('{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2",'
         f'"timestamp":"20","payload":"{payload}"}},"streamSid":"{SID}"}}')

def caller_frame():
    for event in protocol.receive(frame):
        if isinstance(event, AudioReceived):
            caller_audio_message(event.base64)

conversation = Conversation(SessionConfig(instructions="x"))
conversation.server_event({"type": "response.created", "response": {"id": "r1"}}, 0.0)
delta = {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "i1",
         "output_index": 0, "content_index": 0, "delta": payload}

def model_delta():
    for action in conversation.server_event(delta, 1.0):
        if isinstance(action, PlayAudio):
            protocol.media_base64(action.base64)
            if action.mark:
                protocol.mark(action.mark)

result = {}
for name, work in (("caller frame", caller_frame), ("model delta", model_delta)):
    n = 20000
    result[name] = min(timeit.repeat(work, number=n, repeat=15)) / n * 1e6
print(json.dumps(result))
"""


def measure(tree: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    trees = [Path(a).resolve() for a in sys.argv[1:]] or [ROOT]
    rows = [(tree, measure(tree)) for tree in trees]
    print(f"{'tree':40} {'caller frame µs':>16} {'model delta µs':>15}")
    for tree, result in rows:
        print(
            f"{str(tree)[-40:]:40} {result['caller frame']:>16.2f} {result['model delta']:>15.2f}"
        )


if __name__ == "__main__":
    main()
