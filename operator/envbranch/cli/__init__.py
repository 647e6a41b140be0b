"""The `envbranch` command line (also the kubectl plugin `kubectl-envbranch`)."""
