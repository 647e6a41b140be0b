"""envbranch: branch a whole application environment (PostgreSQL database and configuration) on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml's [project] version, the one place it is written (hack/set-version.sh).
    __version__ = version("envbranch")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
