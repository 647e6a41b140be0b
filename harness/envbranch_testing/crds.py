"""Installing envbranch's CRDs into a cluster and waiting until they are served."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from envbranch_testing.processes import wait_until

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def install_crds(api: client.ApiClient, crd_dir: Path = CRD_DIR) -> list[str]:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            body["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(name).metadata.resource_version
            ext.replace_custom_resource_definition(name, body)
        names.append(name)
    for name in names:
        wait_until(lambda n=name: any(c.type == "Established" and c.status == "True"  # type: ignore[misc]
                                      for c in ext.read_custom_resource_definition(n).status.conditions or []),
                   timeout=30, what=f"CRD {name} to be established")
    return names
