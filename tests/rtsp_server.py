"""A real RTSP server for the network camera tests: GStreamer's gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-rtsp, python3-gi, gstreamer1.0-plugins-good / -bad) serving an MP4 (H.264 + AAC) on 127.0.0.1 at
/cam, optionally behind a user and password, optionally without its audio. Run by the system's python3 (the
project's venv has no GObject bindings): `python3 tests/rtsp_server.py CLIP [--port P] [--user U --password W]
[--video-only] [--loop]`. Prints "READY PORT" once it listens; runs until killed.

Each client gets the clip from its start (a camera that was restarted); --loop plays it again and again."""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--video-only", action="store_true")
    parser.add_argument("--loop", action="store_true")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    source = f"multifilesrc location={args.clip} loop=true" if args.loop else f"filesrc location={args.clip}"
    audio = "" if args.video_only else " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97"
    factory.set_launch(f"( {source} ! qtdemux name=d d.video_0 ! queue ! h264parse ! "
                       f"rtph264pay name=pay0 pt=96 config-interval=1{audio} )")
    factory.set_shared(False)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit("cannot listen")
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
