"""Results where edge apps read them: every event of a live run published over MQTT (paho-mqtt), with Home
Assistant discovery.

Topics, under the prefix of ``--mqtt mqtt[s]://[user[:password]@]host[:port][/prefix]`` (default ``r1omni_edge``):

- ``PREFIX/STREAM/result``: each result, the JSONL's object (label, probabilities, reasoning, latency, window, audio).
- ``PREFIX/STREAM/label`` (retained): the current label; ``PREFIX/STREAM/attributes`` (retained): its
  probabilities, reasoning and window, for Home Assistant's attributes.
- ``PREFIX/STREAM/source`` (cameras and microphones lost and found) and ``PREFIX/STREAM/session`` (started, stopped,
  notices, errors).
- ``PREFIX/availability`` (retained): ``online`` once connected, ``offline`` on a clean stop, and ``offline`` as the
  last will, which the broker publishes when the device dies.
- With discovery: ``DISCOVERY/sensor/NODE_STREAM/config`` (retained), a sensor per stream whose state is the label
  and whose attributes are the probabilities, grouped under one device.

Publishing never blocks recognition: a sink call appends to a bounded queue (the oldest message is dropped when it
is full, and counted per stream: the ``stopped`` event's ``mqtt_dropped``), and a thread of its own hands messages
to paho while the broker is connected. Results go at QoS 1 by default, so a message paho has taken is re-sent after
a reconnect: what is lost is what the queue dropped, and it is counted. A broker that is down at start is a notice;
paho reconnects with backoff.
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InputError
from .network import mask_url

DEFAULT_PREFIX = "r1omni_edge"
QUEUE = 1000  # messages held while the broker is away
TOPIC_PART = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to publish. ``url`` keeps the password: never shown (``shown`` is)."""

    url: str
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    prefix: str = DEFAULT_PREFIX
    client_id: str = ""
    qos: int = 1
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    discovery: bool = False
    discovery_prefix: str = "homeassistant"
    required: bool = False
    queue: int = QUEUE

    @property
    def shown(self) -> str:
        return mask_url(self.url)


def parse_mqtt(url: str, **options: Any) -> MqttTarget:
    """``mqtt[s]://[user[:password]@]host[:port][/prefix]`` and the ``--mqtt-*`` options, checked."""
    shown = mask_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise InputError(f"--mqtt {shown}: the port is not a number; expected mqtt://host:1883/prefix") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InputError(f"--mqtt {shown}: expected mqtt://[user[:password]@]host[:port][/prefix] (mqtts:// for TLS)")
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if not TOPIC_PART.match(prefix) or parts.fragment or "#" in url or parts.query:
        raise InputError(f"--mqtt {shown}: the topic prefix {prefix!r} may hold letters, digits, '_', '.', '-' and '/' "
                         "between them (no MQTT wildcards)")
    qos = options.get("qos", 1)
    if qos not in (0, 1, 2):
        raise InputError(f"--mqtt-qos {qos}: 0, 1 or 2")
    discovery_prefix = options.get("discovery_prefix") or "homeassistant"
    if not TOPIC_PART.match(discovery_prefix):
        raise InputError(f"--mqtt-discovery-prefix {discovery_prefix!r}: letters, digits, '_', '.', '-' and '/'")
    tls = parts.scheme == "mqtts" or any(options.get(name) for name in ("ca", "cert", "key"))
    given = {name: value for name, value in options.items() if value is not None and name != "discovery_prefix"}
    return MqttTarget(url=url, host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls,
                      username=urllib.parse.unquote(parts.username) if parts.username else None,
                      password=urllib.parse.unquote(parts.password) if parts.password else None, prefix=prefix,
                      discovery_prefix=discovery_prefix, **given)


def messages(event: dict[str, Any], prefix: str, retain_qos: int, qos: int) -> list[tuple[str, str, int, bool]]:
    """(topic, payload, qos, retain) for one event."""
    stream = event.get("stream", "main")
    base = f"{prefix}/{stream}"
    text = json.dumps(event, ensure_ascii=False, default=str)
    kind = event.get("type")
    if kind == "result":
        attributes = {"probabilities": event.get("probabilities"), "reasoning": event.get("reasoning"),
                      "window": event.get("window"), "time": event.get("time"), "audio": event.get("audio")}
        return [(f"{base}/result", text, qos, False),
                (f"{base}/label", event.get("label") or "unknown", retain_qos, True),
                (f"{base}/attributes", json.dumps(attributes, ensure_ascii=False), retain_qos, True)]
    if kind == "source":
        return [(f"{base}/source", text, qos, False)]
    return [(f"{base}/session", text, qos, False)]


class MqttSink:
    """A session sink that publishes every event (see the module's doc). ``notice`` reports the broker's state in
    the session's events; ``start`` connects (with ``required``, waits for the broker or raises InputError)."""

    def __init__(self, target: MqttTarget, streams: list[str], notice: Callable[[str], None] = lambda text: None,
                 client_factory: Callable | None = None):
        self.target = target
        self.streams = list(streams)
        self.notice = notice
        self.dropped: collections.Counter[str] = collections.Counter()  # per stream
        self.published = 0
        self._queue: collections.deque[tuple[str, str, str, int, bool]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._connected = threading.Event()
        self._ever_connected = False
        self._said_down = False
        self._client = (client_factory or self._paho)()
        self._thread = threading.Thread(target=self._publish_loop, daemon=True, name="r1omni-mqtt")

    # ---- paho ---------------------------------------------------------------------------------------------------
    def _paho(self):
        import paho.mqtt.client as mqtt

        target = self.target
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=target.client_id or "",
                             protocol=mqtt.MQTTv311)
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=target.ca, certfile=target.cert, keyfile=target.key)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=8)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda client, userdata: self._down("it does not answer")
        return client

    @property
    def availability_topic(self) -> str:
        return f"{self.target.prefix}/availability"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            self._down(str(reason_code))
            return
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        if self.target.discovery:
            for topic, payload in self.discovery_configs():
                client.publish(topic, payload, qos=1, retain=True)
        again = self._ever_connected
        self._ever_connected, self._said_down = True, False
        self._connected.set()
        with self._cond:
            self._cond.notify_all()
        self.notice(f"MQTT broker {self.target.shown}: {'connected again' if again else 'connected'}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._closed:
            self._down(f"disconnected ({reason_code})")

    def _down(self, why: str) -> None:
        if not self._said_down:  # once per outage, not once per retry
            self._said_down = True
            self.notice(f"MQTT broker {self.target.shown}: {why}; messages wait (up to {self.target.queue}, the "
                        "oldest dropped and counted) and paho reconnects with backoff")

    def discovery_configs(self) -> list[tuple[str, str]]:
        """Home Assistant MQTT discovery: a sensor per stream, all under one device."""
        from .. import __version__

        node = re.sub(r"[^A-Za-z0-9_-]", "_", self.target.client_id or self.target.prefix)
        device = {"identifiers": [f"r1omni_edge_{node}"], "name": f"r1omni-edge {node}", "model": "R1-Omni",
                  "manufacturer": "r1omni_edge", "sw_version": __version__}
        configs = []
        for stream in self.streams:
            unique = f"r1omni_edge_{node}_{stream}".replace(".", "_")
            config = {"name": f"{stream} emotion", "unique_id": unique, "object_id": unique,
                      "state_topic": f"{self.target.prefix}/{stream}/label",
                      "json_attributes_topic": f"{self.target.prefix}/{stream}/attributes",
                      "availability_topic": self.availability_topic, "payload_available": "online",
                      "payload_not_available": "offline", "icon": "mdi:emoticon-outline", "device": device}
            configs.append((f"{self.target.discovery_prefix}/sensor/{unique}/config", json.dumps(config)))
        return configs

    # ---- the sink -----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> MqttSink:
        try:
            self._client.connect_async(self.target.host, self.target.port, keepalive=30)
            self._client.loop_start()
        except (OSError, ValueError) as exc:
            raise InputError(f"--mqtt {self.target.shown}: {exc}") from None
        self._thread.start()
        if self.target.required and not self._connected.wait(timeout):
            self.close(0.0)
            raise InputError(f"--mqtt {self.target.shown}: the broker did not answer within {timeout:g} s "
                             "(--mqtt-required); check the host, the port and the credentials")
        return self

    def __call__(self, event: dict[str, Any]) -> None:
        """O(1): queue the event's messages; the oldest go when the queue is full."""
        stream = event.get("stream", "main")
        with self._cond:
            if self._closed:
                return
            for topic, payload, qos, retain in messages(event, self.target.prefix, 1, self.target.qos):
                if len(self._queue) >= self.target.queue:
                    self.dropped[self._queue.popleft()[0]] += 1
                self._queue.append((stream, topic, payload, qos, retain))
            self._cond.notify_all()

    def counts(self, stream: str) -> dict[str, int]:
        """What the ``stopped`` event of ``stream`` adds."""
        return {"mqtt_dropped": self.dropped[stream]}

    def _publish_loop(self) -> None:
        import paho.mqtt.client as mqtt

        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._queue and self._connected.is_set()), 1.0)
                if not self._queue or not self._connected.is_set():
                    if self._closed:
                        return
                    continue
                stream, topic, payload, qos, retain = self._queue[0]
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            with self._cond:
                if info.rc == mqtt.MQTT_ERR_SUCCESS or qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN:
                    # taken: paho sends it, or (QoS 1 and 2) keeps it and sends it after the reconnect
                    if self._queue and self._queue[0][1] == topic:
                        self._queue.popleft()
                    self.published += 1
                    self._cond.notify_all()
                else:  # not taken (QoS 0 while the connection drops): it stays first in line
                    self._connected.clear()
                    time.sleep(0.05)

    def flush(self, timeout: float) -> bool:
        """Wait until the queue is empty (while connected); False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what waits (up to ``timeout`` seconds), say ``offline``, disconnect."""
        if self._connected.is_set():
            self.flush(timeout)
            info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(min(timeout, 2.0))
            except (RuntimeError, ValueError):  # the connection went meanwhile
                pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
        if self._thread.is_alive():
            self._thread.join(2.0)
