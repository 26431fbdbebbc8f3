#!/usr/bin/env bash
# The runtime on aarch64, under emulation: an aarch64 Python (Debian 12's, from its arm64 packages) with the wheels a
# Jetson or a Raspberry Pi 5 installs (the core and the runtime and live extras, aarch64 manylinux wheels from PyPI),
# run by qemu-user on this x86 machine. The toy's bundles are exported here on x86 (export never runs on the device),
# recognised by both, and the aarch64 answers held to the x86 ones (tools/aarch64_cases.py: fp32 identical tokens,
# int8 equal labels and close probabilities, the cosines of every stage).
#
#     bash tools/aarch64_run.sh [WORK_DIR [REPORT]]   (default out/aarch64, where the aarch64 environment is kept,
#                                                      and WORK_DIR/report.json)
#
# AARCH64_CLIPS=N: the aarch64 side recognises the first N of the 8 clips only (CI: 4, one per class).
# AARCH64_CPU: qemu's CPU model (default neoverse-n1: ARMv8.2 with dot products and no SVE, as Jetson Orin's
# Cortex-A78AE; "max,sme=off" for an ARMv9 with SVE2 and i8mm).
#
# Needs: Debian 12 (its arm64 packages are fetched with a private apt state: the machine's dpkg is left alone),
# qemu-user-static (installed with apt-get where missing and run as root), PyPI. Writes the table to stdout and the
# report to WORK_DIR/report.json; exits 1 when a case fails, 77 when it cannot run here (saying why: the
# automake convention for "skipped").
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(realpath -m "${1:-out/aarch64}")"
PYTHON=.venv/bin/python
SYSROOT="$WORK/sysroot"
SITE="$WORK/site"
mkdir -p "$WORK"

# shellcheck disable=SC1091
if ! command -v apt-get >/dev/null || [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" != bookworm ]; then
  echo "aarch64_run: needs Debian 12 (bookworm) and apt-get: it takes Debian 12's arm64 Python 3.11" >&2
  exit 77
fi
if ! command -v qemu-aarch64-static >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-user-static) >/dev/null
  else
    echo "aarch64_run: qemu-aarch64-static is missing and this user cannot install it: apt-get install" \
      "qemu-user-static as root" >&2
    exit 77
  fi
fi

# Debian 12's aarch64 Python 3.11 and the libraries it and the wheels load (apt-get download: exactly these, no
# maintainer scripts), unpacked into the sysroot that qemu-user reads absolute paths from (-L).
if [ ! -f "$SYSROOT/.complete" ]; then
  rm -rf "$SYSROOT"
  APT_DIR="$WORK/apt"
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$WORK/debs"
  touch "$APT_DIR/status"
  APT=(-o "Dir::State=$APT_DIR" -o "Dir::State::lists=$APT_DIR/lists" -o "Dir::State::status=$APT_DIR/status"
       -o "Dir::Cache=$APT_DIR/cache" -o APT::Architecture=arm64 -o APT::Architectures::=arm64
       -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${APT[@]}" -qq update
  (cd "$WORK/debs" && apt-get "${APT[@]}" -qq download python3.11-minimal libpython3.11-minimal \
    libpython3.11-stdlib libc6 libexpat1 zlib1g libssl3 libffi8 libgcc-s1 libstdc++6 libbz2-1.0 liblzma5 \
    libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 libnsl2 libtirpc3 libdb5.3 \
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1 media-types)
  for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
  # onnxruntime's CPU detection (cpuinfo) reads /proc/cpuinfo, which qemu-user passes through from the x86 host:
  # it finds no ARM core there and crashes. qemu-user opens an absolute path under -L first when it exists there,
  # so the sysroot holds the /proc/cpuinfo of a two-core Cortex-A78AE (Jetson Orin's core: NEON dot products).
  mkdir -p "$SYSROOT/proc"
  for core in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$core"
  done > "$SYSROOT/proc/cpuinfo"
  touch "$SYSROOT/.complete"
fi

# The wheels pip would install on an aarch64 Linux with this Python: the core and the runtime and live extras.
if [ ! -f "$SITE/.complete" ]; then
  rm -rf "$SITE"
  mapfile -t WANTED < <("$PYTHON" -c "
import sys; sys.path.insert(0, 'tools')
from check_aarch64 import requirements
print('\n'.join(requirements(['runtime', 'live'])))")
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
    --implementation cp --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --target "$SITE" "${WANTED[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  touch "$SITE/.complete"
fi

# Cortex-A78AE's instruction set for the emulated CPU (ARMv8.2 with dot products), not qemu's "max" (SVE, SME):
# onnxruntime then picks the NEON kernels a Jetson Orin runs.
AARCH64=(qemu-aarch64-static -cpu "${AARCH64_CPU:-neoverse-n1}" -L "$SYSROOT" -E "PYTHONPATH=$SITE:$PWD"
         -E PYTHONDONTWRITEBYTECODE=1 "$SYSROOT/usr/bin/python3.11")
# The live side's modules and libraries import there too (sounddevice needs the device's PortAudio: not here).
"${AARCH64[@]}" -c "
import platform, onnxruntime, av, cv2, numpy, starlette, uvicorn, yaml, paho.mqtt.client, multipart
import r1omni_edge.live.run, r1omni_edge.live.web, r1omni_edge.live.mqtt, r1omni_edge.live.network
import r1omni_edge.http_service
print('aarch64 Python', platform.python_version(), platform.machine(), '| onnxruntime', onnxruntime.__version__,
      '| PyAV', av.__version__, '| OpenCV', cv2.__version__, '| the live side imports')"

"$PYTHON" tools/aarch64_cases.py prepare "$WORK/work"
"$PYTHON" tools/aarch64_cases.py run --bundles "$WORK/work" --clips "$WORK/work/clips" --out "$WORK/x86_64.json"
"${AARCH64[@]}" tools/aarch64_cases.py run --bundles "$WORK/work" --clips "$WORK/work/clips" --out "$WORK/aarch64.json" \
  --reference "$WORK/x86_64.npz" ${AARCH64_CLIPS:+--limit "$AARCH64_CLIPS"}
"$PYTHON" tools/aarch64_cases.py compare "$WORK/x86_64.json" "$WORK/aarch64.json" --write "${2:-$WORK/report.json}" \
  --emulator "$(qemu-aarch64-static --version | head -1), -cpu ${AARCH64_CPU:-neoverse-n1}"
