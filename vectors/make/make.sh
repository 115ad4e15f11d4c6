#!/usr/bin/env bash
# Regenerate vectors/*.json (issue 15 files) with the senders' own SDKs, then check them.
# SDKs are installed outside the repository, in $HOOKGUARD_VECTOR_SDKS
# (default ${TMPDIR:-/tmp}/hookguard-vector-sdks): a Python venv and an npm prefix.
# Deterministic: fixed keys, secrets, nonces and clock (now_unix 1764000000); re-running
# rewrites byte-identical files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(cd "$HERE/.." && pwd)
SDKS=${HOOKGUARD_VECTOR_SDKS:-${TMPDIR:-/tmp}/hookguard-vector-sdks}
PYTHON=${PYTHON:-python3}

PIP_PKGS=(
  twilio==9.13.0
  paddle-python-sdk==1.16.1
  squareup==46.0.0.20260916
  mailgun==1.10.0
  sendgrid==6.12.5
  slack_sdk==3.48.0
  standardwebhooks==1.1.0
  cryptography==50.0.2
)
NPM_PKGS=(
  twilio@6.3.1
  @zoom/rivet@0.4.0
  @paddle/paddle-node-sdk@3.10.0
  @linear/sdk@98.0.0
  square@46.0.0
  @sendgrid/eventwebhook@8.0.0
  @slack/bolt@5.1.0
)

mkdir -p "$SDKS/npm"
if [ ! -x "$SDKS/venv/bin/python" ]; then
  "$PYTHON" -m venv "$SDKS/venv"
fi
"$SDKS/venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PKGS[@]}"
if [ ! -f "$SDKS/npm/package.json" ]; then
  echo '{"name": "hookguard-vector-sdks", "private": true}' > "$SDKS/npm/package.json"
fi
npm install --prefix "$SDKS/npm" --no-audit --no-fund --save-exact --loglevel=error "${NPM_PKGS[@]}" >/dev/null

cd "$HERE"
# TEST_MODE would switch off paddle-python-sdk's time check; keep the environment neutral.
unset TEST_MODE
export PYTHONDONTWRITEBYTECODE=1 HOOKGUARD_VECTOR_OUT="$OUT"
"$SDKS/venv/bin/python" gen.py
node verify_node.mjs "$SDKS/npm" "$OUT"
"$SDKS/venv/bin/python" check.py "$OUT"
