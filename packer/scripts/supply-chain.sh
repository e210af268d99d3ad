#!/usr/bin/env bash
# A Packer shell-local post-processor, run on the bake machine from the repository:
# writes a CycloneDX SBOM of the edgepipe binaries in the image (from Cargo.lock,
# with `cargo cyclonedx`), then signs the Packer manifest and the SBOM with cosign.
# SBOM=false / SIGN=false (packer -var sbom=false -var sign=false) skip a step.
set -euo pipefail
image="${IMAGE:?image name}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$PWD"

if [ "${SBOM:-true}" = "true" ]; then
    command -v cargo-cyclonedx >/dev/null || {
        echo "the SBOM needs cargo-cyclonedx: cargo install cargo-cyclonedx (or -var sbom=false)" >&2
        exit 1
    }
    for crate in agent gateway; do
        (cd "$repo/$crate" && cargo cyclonedx --format json --override-filename "$image-$crate.cdx")
        mv "$repo/$crate/$image-$crate.cdx.json" "$out/"
    done
    echo "SBOM: $out/$image-*.cdx.json"
else
    echo "SBOM skipped (sbom=false)"
fi

if [ "${SIGN:-true}" = "true" ]; then
    command -v cosign >/dev/null || {
        echo "signing needs cosign (https://docs.sigstore.dev), or -var sign=false" >&2
        exit 1
    }
    for f in "$out/$image-manifest.json" "$out"/"$image"-*.cdx.json; do
        [ -e "$f" ] || continue
        cosign sign-blob --yes --key "${COSIGN_KEY:?cosign key}" --output-signature "$f.sig" "$f"
    done
    echo "signed: $out/$image-*.sig"
else
    echo "signing skipped (sign=false)"
fi
