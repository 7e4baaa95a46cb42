#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs all of it:
# the package with TensorFlow (CPU), PyTorch (torch==2.13.0, the CPU build, and
# Lightning: pinned in the `test` extra) and the test tools, and Debian's
# Chromium for the browser tests (Playwright drives it; it never downloads a
# browser).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
    DEBIAN_FRONTEND=noninteractive $apt_get update -qq
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq chromium >/dev/null
fi

# A machine that already has `tensorflow` (e.g. a GPU build) keeps it.
if python -c "import tensorflow" >/dev/null 2>&1; then extras="test"; else extras="tf,test"; fi
python -m pip install -q -e ".[$extras]"

# pytest exits non-zero when a test fails and when no test ran at all.
python -m pytest -p no:cacheprovider "$@"
