"""``r1omni-edge service install``: live recognition (``live``) or the HTTP recognition service (``--command
serve``) as a systemd service, started at boot and restarted when it stops. The unit runs the command with the
arguments given (checked now, so that a typo fails here and not at boot), by this Python, with absolute paths; the
JSONL events rotate by size; a web view's or service's token and an MQTT URL with a password live in an environment
file only root reads, not in the world-readable unit."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import output_error
from .options import Parser

DEFAULT_ROTATE_MB = 50.0  # a rotated JSONL: 50 MB parts, 5 kept (300 MB at most) unless the arguments say otherwise
UNIT_DIR = Path("/etc/systemd/system")


@dataclass
class ServicePlan:
    name: str
    live_args: list[str]  # the arguments of `r1omni-edge COMMAND`, paths absolute
    user: str | None
    env: dict[str, str]  # written to the environment file (the web view's token)
    unit_path: Path
    env_path: Path
    command: str = "live"

    def unit(self) -> str:
        command = shlex.join([sys.executable, "-m", "r1omni_edge.cli", self.command, *self.live_args])
        what = "live emotion recognition" if self.command == "live" else "emotion recognition service (HTTP)"
        lines = ["[Unit]",
                 f"Description=r1omni-edge {what} ({self.name})",
                 "Wants=network-online.target",
                 "After=network-online.target sound.target",
                 "",
                 "[Service]",
                 "Type=simple",
                 f"ExecStart={command}",
                 f"EnvironmentFile=-{self.env_path}",
                 "Environment=PYTHONUNBUFFERED=1",
                 "Restart=always",
                 "RestartSec=5",
                 "KillSignal=SIGTERM",  # the session writes its stopped event and exits 143
                 "TimeoutStopSec=30",
                 "SupplementaryGroups=video audio",  # the camera and the microphone
                 "NoNewPrivileges=true",
                 "ProtectSystem=full"]
        if self.user:
            lines.append(f"User={self.user}")
        lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
        return "\n".join(lines)

    def env_text(self) -> str:
        return "".join(f"{key}={value}\n" for key, value in self.env.items())


def plan_serve(serve_args: list[str], args, name: str, user: str | None, unit_dir: Path,
               env_dir: Path) -> ServicePlan:
    """The unit for ``r1omni-edge serve SERVE_ARGS``: the bundle checked, paths absolute, the token in the
    environment file."""
    from ..bundle import read_manifest
    from ..live.web import TOKEN_ENV, ServeAddress, choose_token

    if args.bundle is not None:
        read_manifest(args.bundle)
    values = _absolute(list(serve_args), ("--bundle", "--model", "--models-dir", "--siglip", "--whisper", "--bert"))
    token = choose_token(ServeAddress(args.host, args.port), args.token, args.no_token)
    if args.token is not None:
        _drop(values, "--token")
    env = {TOKEN_ENV: token} if token is not None else {}
    return ServicePlan(name, values, user, env, unit_dir / f"{name}.service", env_dir / f"{name}.env", "serve")


def _drop(values: list[str], flag: str) -> None:
    """``flag`` and its value out of ``values`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    for index, value in enumerate(values):
        if value == flag:
            del values[index:index + 2]
            return
        if value.startswith(flag + "="):
            del values[index]
            return


def _absolute(values: list[str], flags: tuple[str, ...]) -> list[str]:
    """The paths after ``flags`` made absolute: relative to where the command was run, not to the service's /."""
    for flag in flags:
        if flag in values:
            index = values.index(flag) + 1
            values[index] = str(Path(values[index]).resolve())
    return values


def plan_service(live_args: list[str], args, name: str = "r1omni-edge", user: str | None = None,
                 unit_dir: Path = UNIT_DIR, env_dir: Path = Path("/etc/r1omni-edge")) -> ServicePlan:
    """The unit for ``r1omni-edge live LIVE_ARGS`` (``args``: those arguments as `live` parsed them): the bundle
    checked, relative paths made absolute, rotation added to --jsonl, a token for --serve, an MQTT password out of
    the unit."""
    from ..bundle import read_manifest
    from ..live.network import secrets_of
    from ..live.web import TOKEN_ENV, choose_token, parse_serve
    from .live import MQTT_ENV

    if args.duration is not None:
        raise InputError("--duration: a service runs until it is stopped; leave it out")
    if args.show:
        raise InputError("--show: a service has no display; use --serve to watch it from a browser")
    read_manifest(args.bundle)
    values = _absolute(list(live_args), ("--bundle", "--jsonl", "--mqtt-ca", "--mqtt-cert", "--mqtt-key"))
    _absolute_cameras(values)
    _no_password_on_the_command_line(args)
    if args.jsonl and args.jsonl_max_mb is None:
        values += ["--jsonl-max-mb", f"{DEFAULT_ROTATE_MB:g}"]
    env = {}
    if args.serve is not None:
        token = choose_token(parse_serve(args.serve), args.token, args.no_token)
        if args.token is not None:  # out of the world-readable unit, into the root-only environment file
            _drop(values, "--token")
        if token is not None:
            env[TOKEN_ENV] = token
    if args.mqtt is not None and secrets_of(args.mqtt):  # the password out of the unit and the process list
        _drop(values, "--mqtt")
        env[MQTT_ENV] = args.mqtt
    if "--quiet" not in values:
        values.append("--quiet")  # the journal gets the summary and the errors, the JSONL the events
    return ServicePlan(name, values, user, env, unit_dir / f"{name}.service", env_dir / f"{name}.env")


def _absolute_cameras(values: list[str]) -> None:
    """--camera FILE, --source NAME=FILE and --streams FILE as absolute paths (the service runs in /)."""
    for index, value in enumerate(values[:-1]):
        given = values[index + 1]
        if value == "--streams":
            values[index + 1] = str(Path(given).resolve())
        elif value in ("--camera", "--source"):
            name, sep, camera = given.partition("=") if value == "--source" else ("", "", given)
            if not camera.isdigit() and "://" not in camera and "!" not in camera and Path(camera).exists():
                values[index + 1] = f"{name}{sep}{Path(camera).resolve()}"


def _no_password_on_the_command_line(args) -> None:
    """A unit file is world-readable and so is a process's command line: a camera URL with a password must come
    from a streams file only its owner reads. The streams are checked now, not at boot."""
    from ..live.network import secrets_of
    from .live import live_streams

    streams = live_streams(args)
    if args.streams:
        path = Path(args.streams)
        if any(secrets_of(str(spec.camera)) for spec in streams) and path.stat().st_mode & 0o077:
            raise InputError(f"--streams {path}: names a camera password but other users can read the file; "
                             f"chmod 600 {path}")
        return
    for spec in streams:
        if secrets_of(str(spec.camera)):
            raise InputError(f"{spec.shown}: a password on the service's command line would be readable by every "
                             "user of this device (the unit file and the process list); put the camera in a "
                             "streams file (chmod 600) and pass --streams FILE")


def write_service(plan: ServicePlan) -> list[Path]:
    """The unit file and, where there is a token, the environment file (mode 600)."""
    written = []
    try:
        plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
        plan.unit_path.write_text(plan.unit())
        written.append(plan.unit_path)
        if plan.env:
            plan.env_path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(plan.env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(plan.env_text())
            os.chmod(plan.env_path, 0o600)
            written.append(plan.env_path)
    except OSError as exc:
        path = plan.env_path if written else plan.unit_path
        raise output_error(path, exc, "cannot write the service (run as root, or pass --unit-dir and --env-dir "
                                      "folders you can write)") from None
    return written


def register(sub) -> None:
    service = sub.add_parser("service", help="run live recognition as a systemd service, at boot")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    install = actions.add_parser("install", help="write the unit file: service install [options] -- LIVE ARGUMENTS")
    install.add_argument("--name", default="r1omni-edge", help="the unit's name (default r1omni-edge)")
    install.add_argument("--user", help="run as this user (default root); it needs the video and audio groups")
    install.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR")
    install.add_argument("--env-dir", default="/etc/r1omni-edge", metavar="DIR",
                         help="where the web view's token is kept (mode 600)")
    install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    install.add_argument("--command", choices=("live", "serve"), default="live",
                         help="what the service runs: live recognition (default) or the HTTP recognition service")
    install.add_argument("live_args", nargs=argparse.REMAINDER, metavar="-- LIVE ARGUMENTS",
                         help="what `r1omni-edge live` takes, e.g. -- --bundle B --camera 0 --jsonl F --serve "
                              "0.0.0.0:8080, or --streams FILE for several cameras")
    install.set_defaults(func=cmd_service)


def cmd_service(args: argparse.Namespace) -> int:
    from .main import build_parser

    live_args = args.live_args[1:] if args.live_args[:1] == ["--"] else args.live_args
    if not live_args:
        raise InputError(f"give the arguments of `r1omni-edge {args.command}` after --, e.g. service install -- "
                         "--bundle B --camera 0 --jsonl /var/log/r1omni-edge/events.jsonl")
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise InputError(f"--name {args.name!r}: letters, digits, - and _ only (it names the unit file)")
    try:
        parsed = build_parser().parse_args([args.command, *live_args])
    except SystemExit:  # the parser printed which argument is wrong
        raise InputError(f"the arguments after -- are not what `r1omni-edge {args.command}` takes (see above)"
                         ) from None
    plan = (plan_service if args.command == "live" else plan_serve)(
        live_args, parsed, args.name, args.user, Path(args.unit_dir), Path(args.env_dir))
    if args.print:
        print(plan.unit(), end="")
        return 0
    for path in write_service(plan):
        print(f"wrote {path}")
    print(f"start it now and at every boot:\n  sudo systemctl daemon-reload\n  sudo systemctl enable --now {plan.name}\n"
          f"follow it:\n  journalctl -u {plan.name} -f")
    if plan.env:
        print(f"the token (and any MQTT password) is in {plan.env_path}")
    return 0
