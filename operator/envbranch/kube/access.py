"""What the caller may do, asked of the API server (SelfSubjectAccessReview) before a command that
needs more than reading Environments, so a missing permission is named up front."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from envbranch.kube.client import KubeClient


@dataclass(frozen=True)
class Need:
    verb: str
    resource: str
    namespace: str
    why: str
    group: str = ""

    def describe(self) -> str:
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {what} in {self.namespace} ({self.why})"


def allowed(kube: KubeClient, need: Need) -> bool:
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(
            verb=need.verb, resource=need.resource, namespace=need.namespace, group=need.group)))
    result = client.AuthorizationV1Api(kube.api_client()).create_self_subject_access_review(review)
    return bool(result.status.allowed)


def missing(kube: KubeClient, needs: list[Need]) -> list[Need]:
    """The needs the caller lacks, each asked once."""
    return [n for n in dict.fromkeys(needs) if not allowed(kube, n)]
