"""MQTT: `stream` and `live --mqtt` against a real broker on 127.0.0.1 (Debian's mosquitto, started by the test):
every result on its topic with the JSONL's content, retained label and discovery, a broker killed and restarted
mid-run, the last will after SIGKILL, a broker that is down at start, passwords in no output."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from r1omni_edge.cli.main import main
from r1omni_edge.errors import InputError
from r1omni_edge.live.mqtt import messages, parse_mqtt

paho = pytest.importorskip("paho.mqtt.client")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
PASSWORD = "Mq77-s3cret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with a user and password; its sessions persist across a SIGTERM restart."""

    def __init__(self, spawn, root: Path):
        if MOSQUITTO is None:
            if os.environ.get("R1OMNI_EDGE_REQUIRE_MQTT"):
                pytest.fail("mosquitto was installed by the test command but is not found here")
            pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
        self.spawn, self.root, self.port = spawn, root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        passwords = root / "passwd"
        passwords.write_text("")
        passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        subprocess.run([passwd, "-b", str(passwords), "viewer", PASSWORD], check=True, capture_output=True)
        passwords.chmod(0o600)
        (root / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"persistence true\npersistence_location {root}/\nautosave_interval 1\n"
            + ("user root\n" if os.geteuid() == 0 else ""))  # as root it would switch to a user who cannot read them
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = self.spawn([MOSQUITTO, "-c", self.root / "mosquitto.conf"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mosquitto did not listen")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # it saves its sessions: a subscriber's queue survives
        self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"mqtt://viewer:{PASSWORD}@127.0.0.1:{self.port}/test"


class Subscriber:
    """A paho client with a persistent session (QoS 1): it gets what was published while it was away."""

    def __init__(self, broker: Broker, topics: str = "#", client_id: str = "", persistent: bool = False):
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        self.client.username_pw_set("viewer", PASSWORD)
        self.client.on_connect = lambda client, *args: client.subscribe(topics, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        wait_for(lambda: self.client.is_connected())
        time.sleep(0.3)  # the subscription is acknowledged

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [payload for name, payload, _ in self.messages if name == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def broker(spawn, tmp_path):
    return Broker(spawn, tmp_path / "broker")


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_result_reaches_its_topic_with_the_jsonl_content(broker, bundles, clips, tmp_path, capsys):
    subscriber = Subscriber(broker, "test/#")
    jsonl = tmp_path / "events.jsonl"
    code = main(["stream", str(clips["av"]), "--bundle", str(bundles["fp32"][1]), "--fast", "--window", "0.5",
                 "--stride", "0.25", "--mode", "label", "--jsonl", str(jsonl), "--quiet", "--mqtt", broker.url,
                 "--mqtt-discovery", "--mqtt-client-id", "cam-1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = read_events(jsonl)
    results = [e for e in events if e["type"] == "result"]
    assert len(results) >= 5
    wait_for(lambda: len(subscriber.on("test/main/result")) == len(results))
    assert [json.loads(text) for text in subscriber.on("test/main/result")] == results  # the JSONL's content
    sessions = [json.loads(text) for text in subscriber.on("test/main/session")]
    kinds = [session["type"] for session in sessions if session["type"] != "notice"]  # "connected" may come first
    assert kinds[0] == "started" and kinds[-1] == "stopped" and sessions[-1] == events[-1]
    assert events[-1]["mqtt_dropped"] == 0
    subscriber.close()
    late = Subscriber(broker, "#")  # subscribes after the run: the retained messages are there
    wait_for(lambda: late.on("test/main/label") and late.on("test/availability")
             and late.on("homeassistant/sensor/r1omni_edge_cam-1_main/config"))
    assert late.on("test/main/label") == [results[-1]["label"]]
    assert json.loads(late.on("test/main/attributes")[0])["probabilities"] == results[-1]["probabilities"]
    assert late.on("test/availability") == ["offline"]  # a clean stop says so
    config = json.loads(late.on("homeassistant/sensor/r1omni_edge_cam-1_main/config")[0])
    assert config["state_topic"] == "test/main/label" and config["json_attributes_topic"] == "test/main/attributes"
    assert config["availability_topic"] == "test/availability" and config["device"]["identifiers"]
    late.close()
    assert PASSWORD not in out + err + jsonl.read_text()


def test_a_broker_that_goes_away_loses_only_what_is_counted_and_recognition_goes_on(broker, bundles, tmp_path,
                                                                                   spawn):
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "long.mp4", seconds=14, fps=10, size=(48, 48))
    subscriber = Subscriber(broker, "test/main/result", client_id="listener", persistent=True)
    jsonl = tmp_path / "events.jsonl"
    process = spawn([sys.executable, "-m", "r1omni_edge.cli", "stream", clip, "--bundle", bundles["fp32"][1],
                     "--window", "1", "--stride", "0.5", "--mode", "label", "--jsonl", jsonl, "--quiet",
                     "--mqtt", broker.url, "--mqtt-queue", "4"], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len([e for e in read_events(jsonl) if e["type"] == "result"]) >= 3)
    broker.stop()
    time.sleep(4.0)
    broker.start()
    assert process.wait(timeout=60) == 0, process.stderr.read()
    err = process.stderr.read()
    events = read_events(jsonl)
    results = [e for e in events if e["type"] == "result"]
    dropped = events[-1]["mqtt_dropped"]
    assert dropped > 0  # a queue of 4 messages cannot hold 4 s of results and labels
    messages_per_result = 3  # result, label, attributes: the queue drops messages, the count is per stream
    arrived = wait_for(lambda: subscriber.on("test/main/result") if len(subscriber.on("test/main/result")) >= len(
        results) - dropped else None, timeout=20)
    arrived = [json.loads(text) for text in arrived]
    assert all(result in results for result in arrived)  # nothing changed on the way
    assert len(results) - dropped <= len(arrived) <= len(results)
    assert dropped <= messages_per_result * len(results)
    notices = {e["message"].rsplit(": ", 1)[-1].split(";")[0]: e["time"] for e in events if e["type"] == "notice"
               and "MQTT broker" in e["message"]}
    lost = next(at for text, at in notices.items() if text.startswith("disconnected"))
    found = notices["connected again"]
    during = [e["latency_ms"]["total"] for e in results if lost < e["time"] < found]
    before = sorted(e["latency_ms"]["total"] for e in results if e["time"] < lost)
    assert len(during) >= 3  # windows kept being answered while the broker was away
    assert max(during) < 5 * before[len(before) // 2] + 100  # and none waited for it
    assert PASSWORD not in err + jsonl.read_text()
    subscriber.close()


def test_sigkill_makes_the_broker_publish_the_last_will(broker, bundles, tmp_path, spawn):
    from r1omni_edge.synthetic.clips import write_clip

    clip = write_clip(tmp_path / "long.mp4", seconds=30, fps=10, size=(48, 48))
    subscriber = Subscriber(broker, "test/availability")
    process = spawn([sys.executable, "-m", "r1omni_edge.cli", "stream", clip, "--bundle", bundles["fp32"][1],
                     "--mode", "label", "--quiet", "--mqtt", broker.url], stderr=subprocess.DEVNULL)
    wait_for(lambda: subscriber.on("test/availability") == ["online"])
    os.killpg(process.pid, signal.SIGKILL)
    wait_for(lambda: subscriber.on("test/availability") == ["online", "offline"], timeout=15)
    subscriber.close()


def test_a_broker_that_is_down_is_a_notice_unless_required(bundles, clips, tmp_path, capsys):
    port = free_port()  # nothing listens there
    url = f"mqtt://viewer:{PASSWORD}@127.0.0.1:{port}"
    jsonl = tmp_path / "events.jsonl"
    args = ["stream", str(clips["av"]), "--bundle", str(bundles["fp32"][1]), "--fast", "--mode", "label",
            "--window", "1", "--stride", "0.5", "--quiet", "--mqtt", url]
    assert main([*args, "--jsonl", str(jsonl)]) == 0
    events = read_events(jsonl)
    assert any(e["type"] == "result" for e in events)
    capsys.readouterr()
    assert main(["live", "--bundle", str(bundles["fp32"][1]), "--camera", str(clips["av"]), "--no-mic", "--quiet",
                 "--open-timeout", "1", "--mqtt", url, "--mqtt-required"]) == 2
    err = capsys.readouterr().err
    assert "did not answer" in err and len(err.strip().splitlines()) == 1 and PASSWORD not in err
    assert "viewer:***@127.0.0.1" in err


def test_mqtt_urls_and_topics():
    target = parse_mqtt(f"mqtts://viewer:{PASSWORD}@broker.local/site/a", qos=1)
    assert (target.host, target.port, target.tls, target.prefix) == ("broker.local", 8883, True, "site/a")
    assert target.shown == "mqtts://viewer:***@broker.local/site/a" and target.password == PASSWORD
    assert parse_mqtt("mqtt://h").port == 1883 and parse_mqtt("mqtt://h").prefix == "r1omni_edge"
    for bad, message in (("http://h", "expected mqtt://"), ("mqtt://h/a/#", "wildcards"), ("mqtt://h:x", "port")):
        with pytest.raises(InputError, match=message):
            parse_mqtt(bad)
    result = {"type": "result", "stream": "door", "label": "happy", "probabilities": {"happy": 0.9}}
    topics = [(topic, retain) for topic, _, _, retain in messages(result, "p", 1, 1)]
    assert topics == [("p/door/result", False), ("p/door/label", True), ("p/door/attributes", True)]
    assert messages({"type": "source", "stream": "a"}, "p", 1, 0)[0][:1] == ("p/a/source",)
