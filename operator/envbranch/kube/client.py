"""The API client (in-cluster credentials when running in a Pod, else the kubeconfig) and the
helpers every kube/ call shares."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

T = TypeVar("T")


class KubeClient:
    """One API connection pool, shared by the threads that hold this object (the operator's context
    holds one; each CLI command makes its own). Built on first use, so KUBECONFIG is read then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: client.ApiClient | None = None

    def api_client(self) -> client.ApiClient:
        with self._lock:
            if self._client is None:
                self._client = _new_api_client()
            return self._client

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client())

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client())


def _new_api_client() -> client.ApiClient:
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
    # Threads of the handler pool share it; the default pool of 4 would serialise them.
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def is_status(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, ApiException) and exc.status in codes


def get_or_none(read: Callable[[], T]) -> T | None:
    """The object, or None when the API says 404."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def is_transient(exc: BaseException) -> bool:
    """Conflicts, throttling and server errors are worth retrying; other API errors are not. So is an
    API server that cannot be reached (restarting): urllib3 reports that as its own HTTPError."""
    if isinstance(exc, ApiException):
        return exc.status in (409, 429) or exc.status >= 500 or exc.status == 0
    return isinstance(exc, (ConnectionError, TimeoutError, OSError, urllib3.exceptions.HTTPError))
