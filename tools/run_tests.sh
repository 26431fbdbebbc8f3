#!/usr/bin/env bash
# The test command: install into .venv, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
# Debian packages the tests use, installed where they are missing and apt-get can: espeak-ng (the VAD gate's test
# speaks with it), chromium and chromium-driver (the web view's test drives Debian's headless browser), GStreamer's
# RTSP server with its Python bindings (the network camera tests serve a clip over RTSP on 127.0.0.1), mosquitto (the
# MQTT tests start a broker on 127.0.0.1).
RTSP_PROBE="import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
/usr/bin/python3 -c "$RTSP_PROBE" >/dev/null 2>&1 || missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
    >/dev/null 2>&1 || true
fi
# Where the browser could be installed, its test must run, not skip.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then export R1OMNI_EDGE_REQUIRE_BROWSER=1; fi
if /usr/bin/python3 -c "$RTSP_PROBE" >/dev/null 2>&1; then export R1OMNI_EDGE_REQUIRE_RTSP=1; fi
if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then export R1OMNI_EDGE_REQUIRE_MQTT=1; fi
exec .venv/bin/python -m pytest -q "$@"
