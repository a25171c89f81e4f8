#!/usr/bin/env bash
# System packages the test suite uses: a real headless browser (the demo report, the serve page) and espeak-ng
# (generated speech in the media and ASR tests).
# Installs them with apt when missing and running as root; otherwise the tests that need them skip with a reason.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: installing ${need[*]} with apt-get" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null 2>&1 \
    || echo "setup-system: could not install ${need[*]}; tests that need them will skip" >&2
else
  echo "setup-system: ${need[*]} missing and not root; tests that need them will skip" >&2
fi
exit 0
