"""Tags carry the Environment UID and, once the operator knows it, its cluster's identity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envbranch.postgres import tags

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
CLUSTER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.fixture(autouse=True)
def no_cluster() -> Iterator[None]:
    yield
    tags.set_cluster(None)


def test_a_tag_names_the_cluster_once_it_is_known() -> None:
    assert tags.tag_for(UID) == f"envbranch:uid={UID}"
    tags.set_cluster(CLUSTER)
    assert tags.tag_for(UID) == f"envbranch:uid={UID};cluster={CLUSTER}"
    assert tags._parse(tags.tag_for(UID)) == (UID, CLUSTER)
    assert tags._uid(tags.tag_for(UID)) == UID


def test_only_another_clusters_tag_is_foreign() -> None:
    tags.set_cluster(CLUSTER)
    assert not tags.Tagged("database", "d", UID, CLUSTER).foreign
    assert not tags.Tagged("database", "d", UID, None).foreign  # written before clusters were named
    assert tags.Tagged("database", "d", UID, "11111111-2222-4333-8444-555555555555").foreign


@pytest.mark.parametrize("comment", [None, "", "hand-made", f"envbranch:uid={UID};cluster=x y", "envbranch:uid="])
def test_anything_else_is_not_a_tag(comment: object) -> None:
    assert tags._parse(comment) is None
