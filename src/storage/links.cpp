/*
 * links.cpp — the SQL and direct reads for parent budgets and concurrency
 * caps (1.2): quota.links (an account's parent and cap), the shape of the
 * tree for set_parent(), the open holds a cap counts, and the holds a
 * reservation made through parents.
 *
 * Nothing here runs on a call on an account without links in a database
 * where budget/tree.cpp's per-backend cache knows it has none: a cache miss
 * reads the account's row of quota.links directly through its primary key
 * while the table is as installed (table.hpp), with SQL otherwise.
 */
#include "storage/store.hpp"

#include "bridge/guard.hpp"
#include "storage/schema.hpp"
#include "storage/sql.hpp"

#include <cstring>

namespace quota::storage {

namespace {

Statement links_sql = {
    "SELECT " "CAST(l.parent AS pg_catalog.text), CAST(l.max_open_holds AS pg_catalog.int4) FROM ONLY quota.links l"
    " WHERE l.team" EQ "$1 AND l.resource" EQ "$2",
    nullptr, 2, {TEXTOID, TEXTOID}};

Statement any_links_sql = {"SELECT FROM ONLY quota.links l LIMIT 1", nullptr, 0, {}};

Statement write_links_sql = {
    "INSERT INTO quota.links AS l (team, resource, parent, max_open_holds) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (team, resource) DO UPDATE SET parent = EXCLUDED.parent, max_open_holds = EXCLUDED.max_open_holds",
    nullptr, 4, {TEXTOID, TEXTOID, TEXTOID, INT4OID}};

Statement delete_links_sql = {
    "DELETE FROM ONLY quota.links l WHERE l.team" EQ "$1 AND l.resource" EQ "$2", nullptr, 2, {TEXTOID, TEXTOID}};

/*
 * The chain from $3 up (at most 10 steps: a hand-made cycle ends there too)
 * and the longest chain from $1 down.
 */
Statement tree_shape_sql = {
    "WITH RECURSIVE up(team, depth) AS ("
    "  SELECT CAST($3 AS pg_catalog.text), 1"
    "  UNION ALL"
    "  SELECT l.parent, u.depth OPERATOR(pg_catalog.+) 1 FROM up u JOIN ONLY quota.links l"
    "   ON l.team" EQ "u.team AND l.resource" EQ "$2"
    "  WHERE l.parent IS NOT NULL AND u.depth OPERATOR(pg_catalog.<) 10),"
    " down(team, depth) AS ("
    "  SELECT CAST($1 AS pg_catalog.text), 1"
    "  UNION ALL"
    "  SELECT l.team, d.depth OPERATOR(pg_catalog.+) 1 FROM down d JOIN ONLY quota.links l"
    "   ON l.parent" EQ "d.team AND l.resource" EQ "$2"
    "  WHERE d.depth OPERATOR(pg_catalog.<) 10)"
    " SELECT CAST((SELECT pg_catalog.max(u.depth) FROM up u) AS pg_catalog.int4),"
    "  COALESCE((SELECT pg_catalog.bool_or(u.team" EQ "$1) FROM up u), false),"
    "  CAST((SELECT pg_catalog.max(d.depth) FROM down d) AS pg_catalog.int4)",
    nullptr, 3, {TEXTOID, TEXTOID, TEXTOID}};

/* Open holds that count against a cap: not yet expired at $3. */
Statement open_holds_sql = {
    "SELECT pg_catalog.count(*), pg_catalog.min(h.expires_at) FROM ONLY quota.holds h"
    " WHERE h.team" EQ "$1 AND h.resource" EQ "$2 AND h.state" EQ "'open'"
    " AND (h.expires_at IS NULL OR h.expires_at" GT "$3)",
    nullptr, 3, {TEXTOID, TEXTOID, TIMESTAMPTZOID}};

Statement ancestor_holds_sql = {
    "SELECT " "CAST(h.id AS pg_catalog.int8) FROM ONLY quota.holds h"
    " WHERE h.origin" EQ "$1 AND h.id OPERATOR(pg_catalog.<>) $1 ORDER BY h.id",
    nullptr, 1, {INT8OID}};

/* A parent's name and a cap into `out`.  Call inside guarded(). */
void take_links(Datum parent, bool parent_null, Datum cap, bool cap_null, Links &out)
{
    out.has_parent = !parent_null;
    if (out.has_parent) {
        text *name = DatumGetTextPP(parent);
        size_t const length = VARSIZE_ANY_EXHDR(name);
        if (length > kMaxNameBytes)
            ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("parent name in quota.links is too long")));
        std::memcpy(out.parent, VARDATA_ANY(name), length);
        out.parent[length] = '\0';
        out.parent_length = length;
    }
    out.has_cap = !cap_null;
    out.cap = cap_null ? 0 : DatumGetInt32(cap);
}

struct DirectLinks {
    LatestRow result = LatestRow::NoTable;
    Links links;
};

/* The account's row of quota.links through its primary key, under the latest snapshot: no SQL, no executor. */
DirectLinks read_links_direct(AccountKey key)
{
    return bridge::guarded_value([&] {
        DirectLinks found;
        Datum const keys[2] = {key.team, key.resource};
        found.result = read_row_latest(kLinks, keys, [&found](const TableLayout &layout, TupleTableSlot *tuple) {
            bool parent_null = false;
            bool cap_null = false;
            Datum const parent = slot_column(layout, tuple, 2, &parent_null);
            Datum const cap = slot_column(layout, tuple, 3, &cap_null);
            take_links(parent, parent_null, cap, cap_null, found.links);
        });
        return found;
    });
}

} // namespace

bool links_installed()
{
    return OidIsValid(links_relid());
}

Oid links_relid()
{
    return bridge::guarded_value([] { return table_oid(kLinks); });
}

void lock_links()
{
    bridge::guarded([] { LockRelationOid(table_oid(kLinks), ShareRowExclusiveLock); });
}

bool read_links(AccountKey key, Links &out)
{
    out = Links{};
    DirectLinks const direct = read_links_direct(key);
    if (direct.result == LatestRow::NoTable)
        return false;
    if (direct.result != LatestRow::NotDirect) {
        out = direct.links;
        return direct.result == LatestRow::Found;
    }
    /* Not as installed: SQL, where PostgreSQL applies what was added to the table. */
    Datum values[2] = {key.team, key.resource};
    bool found = false;
    execute_latest(links_sql, values, [&] {
        found = SPI_processed > 0;
        if (found)
            bridge::guarded([&] {
                bool parent_null = false;
                bool cap_null = false;
                Datum const parent = column(1, &parent_null);
                Datum const cap = column(2, &cap_null);
                take_links(parent, parent_null, cap, cap_null, out);
            });
    });
    return found;
}

bool any_links()
{
    if (!links_installed())
        return false;
    bool any = false;
    execute_latest(any_links_sql, nullptr, [&] { any = SPI_processed > 0; });
    return any;
}

void write_links(AccountKey key, const Links &links)
{
    if (!links.any()) {
        Datum values[2] = {key.team, key.resource};
        execute(delete_links_sql, values, nullptr, false);
        announce_change("links");
        return;
    }
    Datum const parent = links.has_parent ? bridge::guarded_value([&] {
        return PointerGetDatum(cstring_to_text_with_len(links.parent, static_cast<int>(links.parent_length)));
    })
                                          : (Datum) 0;
    Datum values[4] = {key.team, key.resource, parent, Int32GetDatum(links.cap)};
    char nulls[4] = {' ', ' ', links.has_parent ? ' ' : 'n', links.has_cap ? ' ' : 'n'};
    execute(write_links_sql, values, nulls, false);
    announce_change("links");
}

TreeShape tree_shape(AccountKey key, Datum parent)
{
    Datum values[3] = {key.team, key.resource, parent};
    TreeShape shape;
    execute_latest(tree_shape_sql, values, [&] {
        bool isnull = false;
        shape.above = DatumGetInt32(column(1, &isnull));
        shape.cycle = DatumGetBool(column(2, &isnull));
        shape.below = DatumGetInt32(column(3, &isnull));
    });
    return shape;
}

OpenHolds open_holds(AccountKey key, TimestampTz now)
{
    Datum values[3] = {key.team, key.resource, TimestampTzGetDatum(now)};
    execute(open_holds_sql, values, nullptr, false);
    OpenHolds open;
    bool isnull = false;
    open.count = DatumGetInt64(column(1, &isnull));
    Datum const earliest = column(2, &isnull);
    open.has_earliest = !isnull;
    open.earliest = isnull ? 0 : DatumGetTimestampTz(earliest);
    return open;
}

std::vector<int64> ancestor_holds(int64 origin)
{
    Datum values[1] = {Int64GetDatum(origin)};
    connect();
    execute(ancestor_holds_sql, values, nullptr, false);
    std::vector<int64> ids;
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull = false;
        ids.push_back(DatumGetInt64(column_of(i, 1, &isnull)));
    }
    finish();
    return ids;
}

} // namespace quota::storage
