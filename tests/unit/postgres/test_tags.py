"""Tags carry the Environment UID and, when the server they are written through names one, the
cluster's identity: the format depends on the arguments alone, never on what ran before."""

from __future__ import annotations

import pytest

from envbranch.postgres import tags
from envbranch.postgres.server import Server

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
CLUSTER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
OTHER = "11111111-2222-4333-8444-555555555555"


def test_a_tag_names_the_cluster_it_is_given() -> None:
    assert tags.tag_for(UID, None) == f"envbranch:uid={UID}"
    assert tags.tag_for(UID, CLUSTER) == f"envbranch:uid={UID};cluster={CLUSTER}"
    assert tags._parse(tags.tag_for(UID, CLUSTER)) == (UID, CLUSTER)
    assert tags._uid(tags.tag_for(UID, CLUSTER)) == UID
    # Asking for a cluster's tag changes nothing for the next caller (no hidden state).
    assert tags.tag_for(UID, None) == f"envbranch:uid={UID}"


def test_the_cluster_rides_on_the_server_the_tags_are_written_through() -> None:
    server = Server("db.example", 5432, "admin", "pw", cluster=CLUSTER)
    assert tags.tag_for(UID, server.cluster).endswith(f";cluster={CLUSTER}")


def test_only_another_clusters_tag_is_foreign() -> None:
    assert not tags.Tagged("database", "d", UID, CLUSTER).foreign_to(CLUSTER)
    assert not tags.Tagged("database", "d", UID, None).foreign_to(CLUSTER)  # written before clusters were named
    assert tags.Tagged("database", "d", UID, OTHER).foreign_to(CLUSTER)
    assert not tags.Tagged("database", "d", UID, OTHER).foreign_to(None)    # an operator that knows no cluster


@pytest.mark.parametrize("comment", [None, "", "hand-made", f"envbranch:uid={UID};cluster=x y", "envbranch:uid="])
def test_anything_else_is_not_a_tag(comment: object) -> None:
    assert tags._parse(comment) is None
