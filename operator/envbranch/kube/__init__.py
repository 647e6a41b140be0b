"""Every Kubernetes API call envbranch makes lives in this package."""
