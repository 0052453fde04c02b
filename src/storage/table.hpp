/*
 * table.hpp — direct access to one of the extension's tables, without SQL or
 * the executor, and the proof that it is allowed.  Internal to src/storage/;
 * direct.cpp (quota.accounts) and direct_slots.cpp (quota.slots) use it, and
 * history.cpp reads quota.alert_settings with it.
 *
 * A single-row write outside the executor must re-prove what the executor
 * would have checked.  open_table() opens the relation with the caller's
 * lock and only then decides whether the direct path may touch it: the
 * table must be exactly as the extension made it — a heap table, every
 * column it reads or writes present with its installed type, nullability
 * that admits what it writes, no CHECK constraint or stored generated
 * column, no trigger, rule or row security, replica identity DEFAULT, and
 * its primary key (btree, the installed key columns and operator families,
 * the columns' collations) as its only index ready for inserts (one that
 * CREATE INDEX CONCURRENTLY has not made ready yet needs no entries: its
 * validation phase adds what writers stored meanwhile), not a partition,
 * the installed column types without typmod, identity or generation, and
 * the calling role allowed to SELECT and UPDATE it.  A publication's row
 * filter or column list is checked at each write, as the executor does.
 * Anything else a superuser
 * adds makes the call take the SQL statements instead, where PostgreSQL
 * applies it.
 *
 * The verdict is cached per backend and marked stale by the relcache
 * callback whenever the table changes; a stale verdict is judged again on
 * the first use in a later call, after the lock is taken (taking a lock
 * processes pending invalidations), and then holds for the whole call: a
 * call never switches paths half-way through.  DDL that could
 * change it conflicts with the lock the caller holds (the concurrent forms
 * of CREATE INDEX and REINDEX do not; see only_primary_key() in table.cpp
 * for why a call may still finish on the path it began), so the verdict
 * holds for as long as the caller holds that lock.  Writing calls lock every
 * table they may write up front (lock_for_writing), table before index,
 * as PostgreSQL's own UPDATE does, so REINDEX cannot deadlock with them.
 */
#pragma once

#include "pg.hpp"

namespace quota::storage {

inline constexpr int kMaxTableColumns = 12;
inline constexpr int kMaxKeyColumns = 3;

/* A column the direct path reads or writes. */
struct ColumnSpec {
    const char *name;
    Oid type;
    bool written_null;     /* the extension may store NULL in it */
    bool optional = false; /* came with a later version: a database not yet updated lacks it */
};

/* One of the extension's tables, as installed: its columns, the first `keys` of them its primary key. */
struct TableSpec {
    const char *name;
    int columns;
    ColumnSpec column[kMaxTableColumns];
    int keys;
    Oid key_family[kMaxKeyColumns]; /* btree operator family of each key column */
    /*
     * Only ever read directly (never written outside SQL): what concerns
     * writes — triggers, rules, CHECK constraints, replica identity, the
     * UPDATE privilege — does not stop the direct read.
     */
    bool read_only = false;
};

/* Where the columns are, and whether the direct path may be used; a plain copy. */
struct TableLayout {
    bool direct = false;
    /*
     * Citus manages the table (it is in pg_dist_partition; for
     * quota.accounts: any of accounts, holds and slots): every call takes
     * statements that name the team, which Citus sends to its shard (an
     * UPDATE by ctid would go to every shard).  by_hand: only some of
     * accounts, holds and slots are distributed (not quota.distribute()'s
     * doing), and open_table() refuses the call.
     */
    bool distributed = false;
    bool by_hand = false;
    Oid primary_key = InvalidOid;
    AttrNumber attnum[kMaxTableColumns] = {}; /* 0: the column is missing (a database at an older version) */
    Oid key_collation[kMaxKeyColumns] = {};
};

/* The table's OID, InvalidOid when it does not exist (quota.slots before 1.1).  Call inside guarded(). */
Oid table_oid(const TableSpec &spec);

/* Open the table with `mode` and judge it (see above).  Call inside guarded(); table_close(rel, NoLock) after. */
Relation open_table(const TableSpec &spec, LOCKMODE mode, TableLayout &layout);

/*
 * Citus distributes quota's tables (quota.distribute()): statements must
 * name the team of the rows they touch.  Decided once per call and
 * transaction; false while shards are bound (below).  Call inside guarded().
 */
bool citus_mode();

/* Citus distributes quota's tables, shards bound or not.  Call inside guarded(). */
bool citus_distributed();

/*
 * The shards of one team on the node that holds them (storage/delegate.cpp
 * binds them in a call sent to its team's shard, once it has proven they
 * are this node's placements): while bound, table_oid() gives each table's
 * shard, so the direct path opens the shard itself, and the statements name
 * the shards (store.cpp); citus_mode() is false, citus_distributed() true.
 * `shard` lists the shard ids in kShardTableNames' order, `relation` their
 * relations here.
 */
inline constexpr int kShardTables = 8;
inline constexpr const char *kShardTableNames[kShardTables] = {
    "accounts", "holds", "slots", "links", "alert_settings", "events", "history",
    "history_purged" /* a reference table: its one shard, on every node */};
struct ShardBinding {
    int64 shard[kShardTables] = {};
    Oid relation[kShardTables] = {};
};
/* nullptr: unbound (quota's tables are the tables again). */
void bind_shards(const ShardBinding *binding);
const ShardBinding *bound_shards();

/*
 * On Citus, after writing quota.<table> (links, alert_settings): tell this
 * node's backends at commit, as the table's trigger does on a single node
 * (Citus runs the trigger on the shard's node only).  Nothing otherwise.
 */
void announce_change(const char *table);

/*
 * A new call begins: verdicts judged in earlier calls may be judged again
 * (once each, on first use) if the table changed since; a writing call
 * locks every table it may write, in the extension's order, first.  Call
 * inside guarded().
 */
void start_call(bool writing);

/* Begin a scan of the primary key for its first `nkeys` columns equal to `keys`.  Call inside guarded(). */
IndexScanDesc begin_key_scan(Relation rel, Relation index, const TableSpec &spec, const TableLayout &layout,
                             const Datum *keys, int nkeys, Snapshot snapshot, ScanKeyData *scan_keys);

/* Find the row with the whole key under `snapshot`; the tuple slot holds it.  Call inside guarded(). */
bool find_row(Relation rel, const TableSpec &spec, const TableLayout &layout, const Datum *keys, Snapshot snapshot,
              TupleTableSlot *slot);

/* Column `i` of the spec in a tuple slot whose attributes are fetched (slot_getallattrs). */
inline Datum slot_column(const TableLayout &layout, TupleTableSlot *slot, int i, bool *isnull)
{
    int const at = layout.attnum[i] - 1;
    *isnull = slot->tts_isnull[at];
    return slot->tts_values[at];
}

/*
 * Rewrite the row at `row`, locked by this transaction: spec column i :=
 * values[i] for i < count.  simple_heap_update(), plus the primary-key
 * entry when the update is not HOT; only for a table judged direct.  Call
 * inside guarded().
 */
void rewrite_row(Relation rel, const TableLayout &layout, const ItemPointerData &row, int first, int count,
                 const Datum *values, const bool *isnull);

/* What read_row_latest() found. */
enum class LatestRow { NoTable, NotDirect, Missing, Found };

/*
 * The row with primary key `keys` of a table that is only read directly
 * (spec.read_only), under the latest snapshot, as a cache miss after an
 * invalidation needs it: no SQL, no executor.  `row(layout, slot)` reads
 * its columns when it is Found (calling only PostgreSQL).  NoTable: a
 * database not yet updated has no such table; NotDirect: not as installed,
 * read it with SQL.  Call inside guarded().
 */
template <typename Row>
LatestRow read_row_latest(const TableSpec &spec, const Datum *keys, Row &&row)
{
    if (!OidIsValid(table_oid(spec)))
        return LatestRow::NoTable;
    TableLayout layout;
    Relation rel = open_table(spec, AccessShareLock, layout);
    LatestRow result = LatestRow::NotDirect;
    if (layout.direct) {
        TupleTableSlot *tuple = table_slot_create(rel, nullptr);
        Snapshot const snapshot = RegisterSnapshot(GetLatestSnapshot());
        result = LatestRow::Missing;
        if (find_row(rel, spec, layout, keys, snapshot, tuple)) {
            slot_getallattrs(tuple);
            row(layout, tuple);
            result = LatestRow::Found;
        }
        UnregisterSnapshot(snapshot);
        ExecDropSingleTupleTableSlot(tuple);
    }
    table_close(rel, NoLock);
    return result;
}

} // namespace quota::storage
