#!/bin/sh
# Makes sure `espeak-ng` is installed for the VAD speech test (tests/service/grpc/test_vad.py), as `make test`
# needs it on a fresh CI machine: installs Debian's package when it is missing and we are root with apt-get;
# otherwise it says why and leaves it to the test, which then skips with that reason.
set -u
command -v espeak-ng >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-espeak-ng: espeak-ng missing and not root with apt-get: the VAD speech test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends espeak-ng >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends espeak-ng >/dev/null 2>&1; } \
    || echo "ensure-espeak-ng: apt-get could not install espeak-ng: the VAD speech test will skip" >&2
exit 0
