#!/bin/sh
# `ensure-package.sh BINARY PACKAGE`: makes sure a Debian package the tests need is installed (nginx for tests/deploy,
# redis-server for the session store tests, espeak-ng for the VAD speech test, chromium for the page's browser test),
# as `make test` needs it on a fresh CI machine. Installs the package when BINARY is missing and we are root with
# apt-get; otherwise it says why and leaves it to the tests, which then skip with that reason. Never starts the
# package's service.
set -u
PATH="$PATH:/usr/sbin:/sbin"
binary="$1"
package="$2"
command -v "$binary" >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-package: $binary missing and not root with apt-get: the tests that need it will skip" >&2
    exit 0
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
    # a package's post-install would start its service (nginx on port 80): forbid that for this install only
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1; } \
    || echo "ensure-package: apt-get could not install $package: the tests that need it will skip" >&2
exit 0
