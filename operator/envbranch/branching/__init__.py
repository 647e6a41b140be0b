"""The reconcile steps of an Environment and a DatabaseServer, composed from kube/ and postgres/."""
