"""Masking inside the copy's read: the SQL of the masking functions, the session that holds the key,
and the catalog read the classifier works on.

The key never appears in SQL text or bind parameters (log_statement = all logs both, and
pg_stat_activity shows the text). HMAC-SHA256 is built from the built-in `sha256()` (PostgreSQL
11+, no pgcrypto on the source): the inner and outer pads are derived here, in the operator, and
reach the source session only as COPY data into a temporary table (COPY data is never logged).
The pads are loaded frozen, in a transaction of their own before the reader imports the exported
snapshot: frozen rows are visible to every snapshot, an older imported one included.

Every masked value leaves as text (COPY text format): the branch parses it with the column's own
type input, so type, length (typmod), domain and CHECK are all enforced by the branch, with the
branch role's rights, never by code of the source running with the admin's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg import sql

MaskFunction = Literal["Hash", "Email", "PersonName", "Phone", "Partial", "Constant", "Null", "DateShift"]
KEY_TABLE = "envbranch_mask_key"
MIN_KEY_BYTES = 16
DEFAULT_EMAIL_DOMAIN = "example.invalid"
_BLOCK = 64  # SHA-256's block size: the HMAC pads' length

# Plausible, deterministic replacements: an index from the keyed hash picks one of each.
FIRST_NAMES = ("Ada", "Alan", "Amara", "Ana", "Ari", "Ben", "Carla", "Chen", "Dana", "Dev", "Elif", "Emil", "Eva",
               "Farah", "Finn", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jade", "Jonas", "Kai", "Kira", "Lars",
               "Lea", "Liam", "Lina", "Luca", "Maya", "Milo", "Nia", "Noah", "Nora", "Omar", "Otto", "Pia", "Raj",
               "Rosa", "Sam", "Sara", "Sven", "Tara", "Theo", "Uma", "Vera", "Wen", "Yara", "Yusuf", "Zoe")
LAST_NAMES = ("Abe", "Berg", "Costa", "Dahl", "Eriksen", "Fischer", "Garcia", "Haas", "Ito", "Jensen", "Kaur",
              "Lang", "Meyer", "Novak", "Okafor", "Park", "Quinn", "Rossi", "Silva", "Tanaka", "Umar", "Vogel",
              "Weber", "Xu", "Yilmaz", "Zhang", "Moreau", "Nowak", "Olsen", "Petrov", "Ramos", "Sato", "Torres",
              "Varga", "Walsh", "Young", "Keller", "Lopez", "Mills", "Nagy")


@dataclass(frozen=True)
class ColumnMask:
    """One rule, resolved: what replaces the values of one column."""

    function: MaskFunction
    keep: int = 4                   # Partial: characters kept at the end
    value: str | None = None        # Constant
    max_days: int = 30              # DateShift: |shift| <= max_days, never 0
    domain: str = DEFAULT_EMAIL_DOMAIN  # Email


@dataclass(frozen=True)
class ColumnShape:
    """What a masked value must fit: the column's type (a domain's base type) and length."""

    type_name: str                  # the base type's name in pg_catalog (text, varchar, int8, date, ...)
    max_length: int | None = None   # varchar(n) / char(n)
    not_null: bool = False


@dataclass(frozen=True)
class Masking:
    """A policy resolved for one copy: the key (never shown) and the masks by (schema, table, column),
    tables named as the policy names them (a partitioned table's rules reach its partitions)."""

    policy: str
    key: bytes = field(repr=False)
    columns: Mapping[tuple[str, str, str], ColumnMask]
    # The columns the classifier saw when the branch was planned: one that appears before the copy
    # starts was never classified, and is refused rather than copied as it is. None: not checked.
    classified: frozenset[tuple[str, str, str]] | None = None

    def pads(self) -> tuple[bytes, bytes]:
        """HMAC-SHA256's inner and outer pads of the key (RFC 2104)."""
        key = hashlib.sha256(self.key).digest() if len(self.key) > _BLOCK else self.key
        key = key.ljust(_BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    def secrets(self) -> tuple[str, ...]:
        """What to scrub from any message: the key and the pads as text."""
        ipad, opad = self.pads()
        return (ipad.hex(), opad.hex(), self.key.hex(), self.key.decode(errors="replace"))

    def for_table(self, schema: str, table: str, root: tuple[str, str] | None) -> dict[str, ColumnMask]:
        """The masks of a (leaf) table: its own rules and its partition root's."""
        names = {(schema, table)} | ({root} if root else set())
        return {c: m for (s, t, c), m in self.columns.items() if (s, t) in names}


class MaskingError(ValueError):
    """A rule that cannot be applied to its column as it is (type, NOT NULL)."""


# -- the key, in the reading session -----------------------------------------------------------------
def key_copy_data(masking: Masking) -> bytes:
    """The COPY text row loading the pads: `\\x<hex>\\t\\x<hex>`. Only ever written as COPY data."""
    ipad, opad = masking.pads()
    return b"\\\\x" + ipad.hex().encode() + b"\t\\\\x" + opad.hex().encode() + b"\n"


def key_table_statements() -> list[str]:
    """Run before the reader's snapshot transaction, with key_copy_data on stdin (psql -c ...)."""
    table = sql.Identifier("pg_temp", KEY_TABLE)
    return ["BEGIN", sql.SQL("CREATE TEMPORARY TABLE {} (ipad bytea NOT NULL, opad bytea NOT NULL)").format(
        sql.Identifier(KEY_TABLE)).as_string(None),
        sql.SQL("COPY {} FROM STDIN (FREEZE)").format(table).as_string(None), "COMMIT"]


def load_key(conn: psycopg.Connection[tuple[object, ...]], masking: Masking) -> None:
    """The pads into `conn`'s temporary key table, as COPY data, committed: `conn` (not autocommit)
    must not be in a transaction yet; its own snapshot comes after."""
    statements = key_table_statements()
    conn.execute("SET DateStyle = ISO")  # masked dates travel as text, read back alike under any DateStyle
    conn.execute(statements[1])
    with conn.cursor().copy(statements[2]) as copy:
        copy.write(key_copy_data(masking))
    conn.commit()


# -- the masking functions --------------------------------------------------------------------------
def _text(column: sql.Composable) -> sql.Composable:
    # format('%s', v) is the type's output function: never a user-defined cast run with admin rights.
    return sql.SQL("pg_catalog.format('%s', {})").format(column)


def _pad(which: str) -> sql.Composable:
    return sql.SQL("(SELECT {} FROM {})").format(sql.Identifier(which), sql.Identifier("pg_temp", KEY_TABLE))


def hmac(column: sql.Composable) -> sql.Composable:
    """HMAC-SHA256(key, the value's text), bytea; NULL stays NULL."""
    message = sql.SQL("pg_catalog.convert_to({}, 'UTF8')").format(_text(column))
    inner = sql.SQL("pg_catalog.sha256({} OPERATOR(pg_catalog.||) {})").format(_pad("ipad"), message)
    return sql.SQL("pg_catalog.sha256({} OPERATOR(pg_catalog.||) {})").format(_pad("opad"), inner)


def _hex(digest: sql.Composable, chars: int) -> sql.Composable:
    return sql.SQL("pg_catalog.left(pg_catalog.encode({}, 'hex'), {})").format(digest, sql.Literal(chars))


def _number(digest: sql.Composable, byte: int, modulo: int) -> sql.Composable:
    """An integer in [0, modulo) from four bytes of the digest."""
    return sql.SQL("(('x' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.substr({}, {}, 4), "
                   "'hex'))::pg_catalog.bit(32)::pg_catalog.int8 OPERATOR(pg_catalog.%) {})").format(
        digest, sql.Literal(byte + 1), sql.Literal(modulo))


def _pick(digest: sql.Composable, byte: int, words: tuple[str, ...]) -> sql.Composable:
    array = sql.SQL("ARRAY[{}]::pg_catalog.text[]").format(sql.SQL(", ").join(sql.Literal(w) for w in words))
    return sql.SQL("({})[1 OPERATOR(pg_catalog.+) {}]").format(array, _number(digest, byte, len(words)))


_TEXT_TYPES = {"text", "varchar", "bpchar", "citext", "name"}
_INT_TYPES = {"int8": 2 ** 62}
_DATE_TYPES = {"date", "timestamp", "timestamptz"}
HASH_HEX_CHARS = 32  # 128 bits: distinct inputs stay distinct (a collision is a 2**-64 event at 4e9 rows)


def _fits(expr: sql.Composable, shape: ColumnShape) -> sql.Composable:
    if shape.max_length is None:
        return expr
    return sql.SQL("pg_catalog.left({}, {})").format(expr, sql.Literal(shape.max_length))


def _require(ok: bool, mask: ColumnMask, shape: ColumnShape, what: str) -> None:
    if not ok:
        raise MaskingError(f"{mask.function} {what}, not {shape.type_name}")


def mask_expression(column: sql.Composable, digest: sql.Composable, mask: ColumnMask,
                    shape: ColumnShape) -> sql.Composable:
    """The text that replaces `column`'s value; `digest` is hmac(column), computed once per row."""
    text_ok = shape.type_name in _TEXT_TYPES
    if mask.function == "Null":
        if shape.not_null:
            raise MaskingError("Null cannot mask a NOT NULL column")
        return sql.SQL("NULL::pg_catalog.text")
    if mask.function == "Constant":
        return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {}::pg_catalog.text END").format(
            column, sql.Literal(mask.value or ""))
    if mask.function == "Hash":
        if shape.type_name in _INT_TYPES:
            return sql.SQL("({})::pg_catalog.text").format(_hash_number(digest, _INT_TYPES[shape.type_name]))
        if shape.type_name == "uuid":
            return sql.SQL("pg_catalog.encode(pg_catalog.substr({}, 1, 16), 'hex')").format(digest)
        if shape.type_name == "bytea":
            return sql.SQL("pg_catalog.format('%s', {})").format(digest)
        _require(text_ok, mask, shape, "masks text, uuid, bytea and bigint columns")
        return _hex(digest, min(HASH_HEX_CHARS, shape.max_length or HASH_HEX_CHARS))
    if mask.function == "DateShift":
        _require(shape.type_name in _DATE_TYPES, mask, shape, "shifts date and timestamp columns")
        days = sql.SQL("(1 OPERATOR(pg_catalog.+) {})").format(_number(digest, 0, mask.max_days))
        sign = sql.SQL("(CASE WHEN pg_catalog.get_byte({}, 4) OPERATOR(pg_catalog.%) 2 = 0 THEN 1 ELSE -1 END)"
                       ).format(digest)
        shifted = sql.SQL("{} OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => ({} OPERATOR(pg_catalog.*) "
                          "{})::pg_catalog.int4)").format(column, sign, days)
        if shape.type_name == "date":
            shifted = sql.SQL("({})::pg_catalog.date").format(shifted)
        return _text(shifted)
    _require(text_ok, mask, shape, "masks text columns")
    return _fits(_text_mask(column, digest, mask, shape), shape)


def _hash_number(digest: sql.Composable, modulo: int) -> sql.Composable:
    return sql.SQL("(('x' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.substr({}, 1, 8), "
                   "'hex'))::pg_catalog.bit(64)::pg_catalog.int8 OPERATOR(pg_catalog.&) {})").format(
        digest, sql.Literal(modulo - 1))


def _text_mask(column: sql.Composable, digest: sql.Composable, mask: ColumnMask,
               shape: ColumnShape) -> sql.Composable:
    if mask.function == "Email":
        suffix = "@" + mask.domain
        room = (shape.max_length or 1 + HASH_HEX_CHARS + len(suffix)) - len(suffix) - 1
        if room < 12:
            raise MaskingError(f"Email needs at least {13 + len(suffix)} characters: the column has "
                               f"{shape.max_length}")
        return sql.SQL("'u' OPERATOR(pg_catalog.||) {} OPERATOR(pg_catalog.||) {}").format(
            _hex(digest, min(HASH_HEX_CHARS, room)), sql.Literal(suffix))
    if mask.function == "PersonName":
        return sql.SQL("{} OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) {}").format(
            _pick(digest, 0, FIRST_NAMES), _pick(digest, 4, LAST_NAMES))
    if mask.function == "Phone":
        # +1 555 then 7 digits: the 555 exchange is reserved for fiction.
        digits = sql.SQL("pg_catalog.lpad(({})::pg_catalog.text, 7, '0')").format(_number(digest, 0, 10_000_000))
        return sql.SQL("'+1 555 ' OPERATOR(pg_catalog.||) {}").format(digits)
    # Partial: the last `keep` characters kept, the rest starred (same length).
    value = _text(column)
    return sql.SQL("pg_catalog.repeat('*', GREATEST(pg_catalog.length({v}) OPERATOR(pg_catalog.-) {k}, 0))"
                   " OPERATOR(pg_catalog.||) pg_catalog.right({v}, {k})").format(v=value, k=sql.Literal(mask.keep))


_KEYED = {"Hash", "Email", "PersonName", "Phone", "DateShift"}


def masked_select(schema: str, table: str, columns: list[str], masks: Mapping[str, ColumnMask],
                  shapes: Mapping[str, ColumnShape], where: sql.Composable | None = None) -> sql.Composable:
    """`SELECT <each column, masked or as it is> FROM ONLY table`: the query a masked COPY reads.
    Each keyed column's HMAC is computed once per row, in a lateral subquery kept from being inlined
    (OFFSET 0: the planner would otherwise repeat the expression at every use)."""
    src = sql.Identifier("src")
    digests: list[sql.Composable] = []
    items: list[sql.Composable] = []
    for i, name in enumerate(columns):
        column = sql.SQL("{}.{}").format(src, sql.Identifier(name))
        mask = masks.get(name)
        if mask is None:
            items.append(column)
            continue
        digest = sql.SQL("m.{}").format(sql.Identifier(f"h{i}"))
        if mask.function in _KEYED:
            digests.append(sql.SQL("{} AS {}").format(hmac(column), sql.Identifier(f"h{i}")))
        try:
            items.append(mask_expression(column, digest, mask, shapes[name]))
        except MaskingError as exc:
            raise MaskingError(f"column {schema}.{table}.{name}: {exc}") from None
    lateral = (sql.SQL(" CROSS JOIN LATERAL (SELECT {} OFFSET 0) AS m").format(sql.SQL(", ").join(digests))
               if digests else sql.SQL(""))
    query = sql.SQL("SELECT {} FROM ONLY {} AS src{}").format(
        sql.SQL(", ").join(items), sql.Identifier(schema, table), lateral)
    return query if where is None else sql.SQL("{} WHERE {}").format(query, where)


# -- the catalog, for the classifier and the copy ---------------------------------------------------
COLUMNS_QUERY = """
SELECT n.nspname, c.relname, a.attname,
       bt.typname AS base_type,
       CASE WHEN bt.typname IN ('varchar', 'bpchar') AND coalesce(NULLIF(a.atttypmod, -1), t.typtypmod) > 4
            THEN coalesce(NULLIF(a.atttypmod, -1), t.typtypmod) - 4 END AS max_length,
       a.attnotnull OR coalesce(t.typnotnull, false) AS not_null,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS shown_type,
       rn.nspname AS root_schema, r.relname AS root_table
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_catalog.pg_class r ON r.oid = pg_catalog.pg_partition_root(c.oid) AND r.oid <> c.oid
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relkind = 'r' AND a.attgenerated = ''
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2, a.attnum
"""


@dataclass(frozen=True)
class SourceColumn:
    schema: str
    table: str
    column: str
    shape: ColumnShape
    shown_type: str
    root: tuple[str, str] | None  # the partitioned table a partition belongs to


def source_columns(conn: psycopg.Connection[tuple[object, ...]]) -> list[SourceColumn]:
    """Every copied column of the source's tables (domains resolved to their base type)."""
    out = []
    for schema, table, column, base, length, not_null, shown, root_schema, root_table in conn.execute(
            COLUMNS_QUERY).fetchall():
        out.append(SourceColumn(str(schema), str(table), str(column),
                                ColumnShape(str(base), int(str(length)) if length is not None else None,
                                            bool(not_null)),
                                str(shown), (str(root_schema), str(root_table)) if root_table else None))
    return out


class TableReads:
    """A policy laid over the source's columns, inside the copy's snapshot: the masked query of each
    table that has masks. Every rule is checked against its column here, before a row is read."""

    def __init__(self, masking: Masking, columns: list[SourceColumn]) -> None:
        self.masking = masking
        self._masks: dict[tuple[str, str], dict[str, ColumnMask]] = {}
        self._rules_used: set[tuple[str, str, str]] = set()
        self._shapes: dict[tuple[str, str], dict[str, ColumnShape]] = {}
        covered: set[tuple[str, str, str]] = set()
        for col in columns:
            table_masks = masking.for_table(col.schema, col.table, col.root)
            mask = table_masks.get(col.column)
            if mask is None:
                continue
            covered |= {(col.schema, col.table, col.column), (*(col.root or ("", "")), col.column)}
            self._rules_used.add((*(col.root or (col.schema, col.table)), col.column))
            self._masks.setdefault((col.schema, col.table), {})[col.column] = mask
            self._shapes.setdefault((col.schema, col.table), {})[col.column] = col.shape
            try:
                mask_expression(sql.SQL("v"), sql.SQL("d"), mask, col.shape)
            except MaskingError as exc:
                raise MaskingError(f"column {col.schema}.{col.table}.{col.column}: {exc}") from None
        missing = sorted(".".join(k) for k in masking.columns if k not in covered)
        if missing:
            raise MaskingError(f"masking policy {masking.policy} names columns the source does not have: "
                               f"{', '.join(missing)}")
        if masking.classified is not None:
            new = [f"{c.schema}.{c.table}.{c.column}" for c in columns
                   if (c.schema, c.table, c.column) not in masking.classified]
            if new:
                raise MaskingError(f"columns appeared after the masking plan and were never classified: "
                                   f"{', '.join(new)}; branch again (envbranch.io/retry)")

    @property
    def column_count(self) -> int:
        """Masked columns, a partitioned table's counted once."""
        return len(self._rules_used)

    def query(self, schema: str, table: str, columns: list[str],
              where: sql.Composable | None = None) -> sql.Composable | None:
        """The masked SELECT of a table, None when nothing in it is masked."""
        masks = self._masks.get((schema, table))
        if not masks:
            return None
        return masked_select(schema, table, columns, masks, self._shapes[(schema, table)], where)


def large_object_count(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata").fetchone()
    return int(str(row[0])) if row else 0
