"""Chart tooling for the tests: helm and kubeconform (built from Go modules by hack/build-tools.sh),
JSON schemas for kubeconform generated from a live API server's OpenAPI, and Argo CD's Lua health
checks evaluated the way Argo CD runs them.

kubeconform normally downloads its schemas; these machines have no network for that, and a local
API server with our CRDs installed describes exactly the kinds the chart renders.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from envbranch_testing.controlplane import REPO_ROOT, run_build_script
from envbranch_testing.processes import wait_until

TOOLS = ("helm", "kubeconform")
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"
CHART = REPO_ROOT / "charts" / "envbranch"
RELEASE = "envbranch"
# kubeconform's own layout (that of kubernetes-json-schema): deployment-apps-v1.json, service-v1.json,
# environment-envbranch-v1alpha1.json — kind, first label of the group, version; all lower case.
SCHEMA_FILE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
ARGOCD_HEALTH_BUILD = REPO_ROOT / "hack" / "build-argocd-health.sh"
HEALTH_SCRIPTS = {"Environment": CHART / "health" / "environment.lua",
                  "DatabaseServer": CHART / "health" / "databaseserver.lua"}


def find_tool(name: str) -> Path:
    """`helm` or `kubeconform`: from ENVBRANCH_TOOLS when it names a folder holding it, else from the
    cache hack/build-tools.sh fills (built on first use)."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; one of {', '.join(TOOLS)}")
    if folder := os.environ.get("ENVBRANCH_TOOLS"):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return run_build_script(BUILD_SCRIPT, "helm and kubeconform") / name


def run_tool(name: str, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(find_tool(name)), *args], input=input, capture_output=True, text=True,
                          check=check, timeout=300)


def render_chart(values: dict[str, Any] | None = None, *, namespace: str = "envbranch-system",
                 include_crds: bool = True, release: str = RELEASE) -> str:
    """`helm template` of charts/envbranch with these values (merged over values.yaml)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="envbranch-values-") as f:
        yaml.safe_dump(values or {}, f)
        f.flush()
        args = ["template", release, str(CHART), "--namespace", namespace, "--values", f.name]
        return run_tool("helm", *args, *(["--include-crds"] if include_crds else [])).stdout


def documents(manifests: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifests) if d]


# -- kubeconform schemas from the API server's OpenAPI v3 ----------------------------------------
def _openapi(api: client.ApiClient, path: str) -> dict[str, Any]:
    method, url, headers, _, _ = api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                                     auth_settings=["BearerToken"])
    resp = api.call_api(method, url, header_params=headers, _request_timeout=60)
    resp.read()
    return dict(json.loads(resp.data))


_SCHEMA_MAPS = ("properties", "patternProperties")         # name -> schema
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")                  # [schema]
_SCHEMAS = ("items", "additionalProperties", "not")          # schema (or a bool for additionalProperties)


def _to_json_schema(node: Any, strict: bool) -> Any:
    """OpenAPI v3 (as kube-apiserver publishes it) to JSON Schema 2020-12: local refs into $defs,
    nullable as a null type, int-or-string as either, and — strict — no undeclared properties
    (what kubeconform's -strict catalogues do; the API server itself refuses unknown fields).
    Walks keywords only: property names, defaults and examples are data, never rewritten."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS:
            out[key] = {name: _to_json_schema(sub, strict) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [_to_json_schema(sub, strict) for sub in value]
        elif key in _SCHEMAS:
            out[key] = _to_json_schema(value, strict)
        else:
            out[key] = value
    if isinstance(ref := out.get("$ref"), str):
        out["$ref"] = ref.replace("#/components/schemas/", "#/$defs/")
    if out.get("format") == "int-or-string" or out.get("x-kubernetes-int-or-string") is True:
        out.pop("format", None)
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (strict and "properties" in out and "additionalProperties" not in out
            and out.get("x-kubernetes-preserve-unknown-fields") is not True):
        out["additionalProperties"] = False
    return out


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        own = [ref.removeprefix("#/$defs/")] if isinstance(ref, str) and ref.startswith("#/$defs/") else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _reachable(defs: dict[str, Any], root: str) -> dict[str, Any]:
    """The definitions root needs, itself included (a Pod needs a few hundred, not the whole group)."""
    seen, todo = {root}, [root]
    while todo:
        for ref in _refs(defs[todo.pop()]):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return {name: defs[name] for name in sorted(seen)}


def _kind_suffix(group: str, version: str) -> str:
    return f"-{group.split('.')[0]}-{version}" if group else f"-{version}"


def write_kubeconform_schemas(api: client.ApiClient, out_dir: Path, api_versions: set[str], *,
                              strict: bool = True) -> str:
    """One standalone JSON schema per kind of each API version (`v1`, `apps/v1`, ...), from the
    server's /openapi/v3, in kubeconform's layout. Returns the -schema-location template."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {v: f"api/{v}" if "/" not in v else f"apis/{v}" for v in api_versions}
    # A CRD's group-version joins the OpenAPI a moment after the CRD is Established.
    wait_until(lambda: set(wanted.values()) <= set(_openapi(api, "/openapi/v3")["paths"]), timeout=60,
               what=f"the API server to publish OpenAPI for {', '.join(sorted(api_versions))} (CRDs installed?)")
    written: dict[str, str] = {}
    for api_version, path in sorted(wanted.items()):
        schemas = _openapi(api, f"/openapi/v3/{path}")["components"]["schemas"]
        defs = {name: _to_json_schema(schema, strict) for name, schema in schemas.items()}
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                if "/".join(p for p in (gvk["group"], gvk["version"]) if p) != api_version:
                    continue
                file = f"{gvk['kind']}{_kind_suffix(gvk['group'], gvk['version'])}".lower() + ".json"
                if written.get(file, name) != name:
                    raise ValueError(f"{file}: both {written[file]} and {name} map to it")
                written[file] = name
                doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"#/$defs/{name}",
                       "$defs": _reachable(defs, name)}
                (out_dir / file).write_text(json.dumps(doc))
    return str(out_dir / SCHEMA_FILE)


# -- Argo CD health ------------------------------------------------------------------------------
def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the chart's health script for obj's kind as Argo CD does: Lua 5.1 (Argo CD embeds
    gopher-lua), the object as the global `obj`, JSON arrays as 1-based tables. Returns {status, message}."""
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_SCRIPTS[obj["kind"]].read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


def argocd_health_upstream(objs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The same health scripts run by Argo CD's own code (util/lua VM.ExecuteHealthLua of
    github.com/argoproj/argo-cd/v3, on gopher-lua): hack/argocd-health, built from Go modules and
    cached. One result per object: {status, message} or {error}."""
    binary = run_build_script(ARGOCD_HEALTH_BUILD, "hack/argocd-health") / "argocd-health"
    results: list[dict[str, str]] = [{} for _ in objs]
    for kind, script in HEALTH_SCRIPTS.items():
        indexes = [i for i, o in enumerate(objs) if o.get("kind") == kind]
        if not indexes:
            continue
        out = subprocess.run([str(binary)], input=json.dumps({"script": script.read_text(),
                                                                "objects": [objs[i] for i in indexes]}),
                             capture_output=True, text=True, check=True, timeout=60)
        for i, result in zip(indexes, json.loads(out.stdout), strict=True):
            results[i] = result
    return results
