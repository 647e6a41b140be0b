"""envbranch: branch a whole application environment (PostgreSQL database and configuration) on Kubernetes."""

__version__ = "0.1.0"
