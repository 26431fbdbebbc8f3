"""``--show``: the camera picture with the current label drawn on it, where a display exists. It never blocks the
session: the main loop calls ``update`` between ticks, and a missing display turns it into a no-op with a notice."""

from __future__ import annotations

import os
from typing import Any, Callable

from .rings import FrameRing

WINDOW = "r1omni-edge"


class Overlay:
    def __init__(self, frames: FrameRing, notice: Callable[[str], None]):
        self.frames = frames
        self.text = "waiting for the first window"
        self.enabled = True
        self._notice = notice
        if os.name != "nt" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            self._disable("no display here (DISPLAY is not set)")

    def _disable(self, why: str) -> None:
        self.enabled = False
        self._notice(f"--show is off: {why}; results still go to the terminal and the JSONL file")

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "result":
            p = (event.get("probabilities") or {}).get(event.get("label"))
            self.text = f"{event.get('label')}" + (f" {p:.0%}" if p is not None else "")

    def update(self) -> None:
        if not self.enabled:
            return
        latest = self.frames.latest()
        if latest is None:
            return
        import cv2

        frame = cv2.cvtColor(latest[1], cv2.COLOR_RGB2BGR)
        cv2.rectangle(frame, (0, 0), (frame.shape[1], 36), (0, 0, 0), -1)
        cv2.putText(frame, self.text, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        try:
            cv2.imshow(WINDOW, frame)
            cv2.waitKey(1)
        except cv2.error as exc:  # a headless OpenCV build has no GUI
            self._disable(f"this OpenCV has no GUI ({str(exc).splitlines()[-1][:80]}); install opencv-python")

    def close(self) -> None:
        if self.enabled:
            import cv2

            cv2.destroyAllWindows()
