"""The sample application the demo and the e2e tests branch: a small shop database with enums,
views, foreign keys and rows, and configuration of every category."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client

from envbranch_testing.postgres import Postgres

SHOP_SCHEMA = """
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE CHECK (position('@' in email) > 1),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    status order_status NOT NULL DEFAULT 'new',
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_lines (
    order_id bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES products(id),
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX orders_open ON orders (placed_at) WHERE status IN ('new', 'paid');
CREATE VIEW order_totals AS
    SELECT o.id AS order_id, c.email, sum(l.quantity * p.price_cents) AS total_cents
    FROM orders o JOIN customers c ON c.id = o.customer_id
    JOIN order_lines l ON l.order_id = o.id JOIN products p ON p.id = l.product_id
    GROUP BY o.id, c.email;
INSERT INTO customers (email, name)
    SELECT 'customer' || i || '@example.com', 'Customer ' || i FROM generate_series(1, 200) i;
INSERT INTO products (sku, title, price_cents)
    SELECT 'SKU-' || i, 'Product ' || i, 100 * i FROM generate_series(1, 50) i;
INSERT INTO orders (customer_id, status)
    SELECT 1 + (i % 200), (ARRAY['new','paid','shipped','cancelled']::order_status[])[1 + i % 4]
    FROM generate_series(1, 500) i;
INSERT INTO order_lines (order_id, product_id, quantity)
    SELECT o.id, 1 + (o.id % 50), 1 + (o.id % 3) FROM orders o;
"""

TABLES = ("customers", "products", "orders", "order_lines")


def create_shop_database(pg: Postgres, dbname: str = "shop") -> None:
    """The production database, owned by the operator's admin role as a real app database would be
    owned by a role the admin can act for."""
    with pg.connect(role=pg.admin) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')  # a fixed test name, not user input
        # A well-kept production database lets in only the roles granted CONNECT.
        conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{dbname}" FROM PUBLIC')
    with pg.connect(dbname, role=pg.admin) as conn:
        conn.execute(SHOP_SCHEMA)


def row_counts(pg: Postgres, dbname: str) -> dict[str, int]:
    with pg.connect(dbname) as conn:
        return {t: int(str(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])) for t in TABLES}  # type: ignore[index]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def shop_configuration(namespace: str) -> list[dict[str, Any]]:
    """ConfigMaps and Secrets of every category, as a team would keep them for production."""
    def meta(name: str, category: str, **extra: Any) -> dict[str, Any]:
        labels = {"envbranch.io/category": category, "app.kubernetes.io/instance": "shop-prod",
                  **extra.pop("labels", {})}
        annotations = {"argocd.argoproj.io/tracking-id": f"shop:/ConfigMap:{namespace}/{name}",
                       **extra.pop("annotations", {})}
        return {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}

    uploads_id, invoices_id = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    return [
        {"kind": "ConfigMap", "metadata": meta("uploads", "file-providers",
                                              labels={"envbranch.io/provider-id": uploads_id}),
         "data": {"bucket": "shop-uploads", "region": "eu-west-1"}},
        {"kind": "ConfigMap", "metadata": meta("invoices", "file-providers",
                                              labels={"envbranch.io/provider-id": invoices_id}),
         "data": {"bucket": "shop-invoices"}},
        {"kind": "ConfigMap", "metadata": meta("routes", "gateway-routes"),
         "data": {"routes.yaml": "- path: /api\n  service: shop-api\n"}},
        {"kind": "Secret", "metadata": meta("webhooks", "gateway-routes",
                                           annotations={"envbranch.io/rotate-keys": "signing-secret"}),
         "data": {"url": _b64("https://hooks.example.com/shop"), "signing-secret": _b64("prod-signing-secret-value")}},
        {"kind": "ConfigMap", "metadata": meta("cors", "security-config"),
         "data": {"allowed-origins": "https://shop.example.com", "rate-limit": "100/s"}},
        {"kind": "Secret", "metadata": meta("oauth-shop-web", "oauth-clients",
                                           annotations={"envbranch.io/rotate-keys": "client-secret"}),
         "data": {"client-id": _b64("shop-web"), "client-secret": _b64("prod-oauth-client-secret")}},
        {"kind": "ConfigMap", "metadata": meta("app-env", "environment-variables"),
         "data": {"LOG_LEVEL": "info", "FEATURE_CHECKOUT_V2": "false", "CURRENCY": "EUR"}},
        {"kind": "Secret", "metadata": meta("app-secrets", "environment-variables"),
         "data": {"STRIPE_KEY": _b64("sk_live_prod_value")}},
        {"kind": "Secret", "metadata": meta("google-login", "auth-providers"),
         "data": {"client-id": _b64("google-prod"), "client-secret": _b64("google-prod-secret")}},
    ]


def apply_shop_configuration(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    core = client.CoreV1Api(api)
    objects = shop_configuration(namespace)
    for obj in objects:
        body = {"apiVersion": "v1", **obj}
        if obj["kind"] == "ConfigMap":
            core.create_namespaced_config_map(namespace, body)
        else:
            core.create_namespaced_secret(namespace, body)
    return objects
