#!/usr/bin/env bash
# Debian's chromium for the browser test: Playwright drives it through executable_path=/usr/bin/chromium.
# (`playwright install` would download a browser build, which these machines cannot do.) Idempotent: does
# nothing when /usr/bin/chromium is there already; the browser test skips cleanly when it is missing.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium.sh: /usr/bin/chromium is installed" >&2
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update >&2
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core >&2
/usr/bin/chromium --version >&2
