/*
 * table.cpp — direct table access and the check that allows it (table.hpp).
 *
 * PostgreSQL's model for a single-row write outside the executor is
 * execReplication.c (logical replication's apply worker): find the row by an
 * index under a fresh snapshot, lock it with table_tuple_lock(), update it
 * and maintain the indexes.  The apply worker goes through the executor's
 * helpers because it must serve any table; here the table is the
 * extension's own, so the direct path is taken only when the table is
 * proven to need nothing beyond simple_heap_update() and its primary-key
 * entry, and otherwise the SQL statements run.
 */
#include "storage/table.hpp"

#include "storage/schema.hpp"
#include "bridge/guard.hpp"

#include <cstring>
#include <initializer_list>
#include <unordered_map>

namespace quota::storage {

namespace {

/* The verdict on one table, per backend; made stale by the relcache callback. */
struct Verdict {
    Oid relation = InvalidOid;
    bool judged = false;
    bool stale = false;
    uint64 call = 0; /* the call it was judged in */
    TableLayout layout;
};

/* Calls counted per backend: a verdict judged in this call stays for the rest of it. */
uint64 current_call = 0;

constexpr int kTables = 5;
Verdict verdicts[kTables];
/* Verdicts on bound shards (bind_shards()), by relation: a worker holds several shards of each table. */
std::unordered_map<Oid, Verdict> shard_verdicts;
constexpr size_t kMaxShardVerdicts = 4096;
bool callback_registered = false;

bool bound = false;
ShardBinding binding;

int index_of(const TableSpec &spec)
{
    if (&spec == &kAccounts)
        return 0;
    if (&spec == &kSlots)
        return 1;
    if (&spec == &kAlertSettings)
        return 3;
    if (&spec == &kLinks)
        return 4;
    return 2;
}

void forget(Datum, Oid relid)
{
    /*
     * Any change to one of the tables makes every verdict stale: the one on
     * quota.accounts also covers quota.slots and quota.holds (whether Citus
     * manages them).  Such changes are rare (DDL, ANALYZE).
     */
    bool ours = relid == InvalidOid || shard_verdicts.count(relid) > 0;
    for (Verdict const &verdict : verdicts)
        ours = ours || relid == verdict.relation;
    if (!ours)
        return;
    for (Verdict &verdict : verdicts)
        verdict.stale = true;
    for (auto &entry : shard_verdicts)
        entry.second.stale = true;
}

/* Where a TableSpec is in kShardTableNames. */
int shard_index_of(const TableSpec &spec)
{
    for (int i = 0; i < kShardTables; i++)
        if (std::strcmp(kShardTableNames[i], spec.name) == 0)
            return i;
    return -1;
}

void register_callback()
{
    if (!callback_registered) {
        CacheRegisterRelcacheCallback(forget, (Datum) 0);
        callback_registered = true;
    }
}

/* The table itself (not a bound shard): its OID, looked up again after a change. */
Oid shell_oid(const TableSpec &spec)
{
    Verdict &verdict = verdicts[index_of(spec)];
    if (OidIsValid(verdict.relation) && !(verdict.stale && verdict.call != current_call))
        return verdict.relation;
    register_callback();
    /* Looked up again after a change: DROP and CREATE EXTENSION make new tables. */
    Oid const relation = get_relname_relid(spec.name, get_namespace_oid("quota", false));
    if (relation != verdict.relation) {
        verdict = Verdict{};
        verdict.relation = relation;
    }
    return verdict.relation;
}

AttrNumber find_column(TupleDesc desc, const char *name)
{
    for (int a = 0; a < desc->natts; a++) {
        Form_pg_attribute const attribute = TupleDescAttr(desc, a);
        if (!attribute->attisdropped && std::strcmp(NameStr(attribute->attname), name) == 0)
            return attribute->attnum;
    }
    return 0;
}

/* The columns: present (or optional and absent), of the installed type, NULL allowed where it is written. */
bool columns_as_installed(Relation rel, const TableSpec &spec, TableLayout &layout)
{
    TupleDesc const desc = RelationGetDescr(rel);
    bool ok = true;
    for (int i = 0; i < spec.columns; i++) {
        ColumnSpec const &column = spec.column[i];
        layout.attnum[i] = find_column(desc, column.name);
        if (layout.attnum[i] == 0) {
            ok = ok && column.optional;
            continue;
        }
        Form_pg_attribute const attribute = TupleDescAttr(desc, layout.attnum[i] - 1);
        /* The installed type with no typmod (an UPDATE would coerce to one), no identity or generation. */
        if (attribute->atttypid != column.type || attribute->atttypmod != -1 || attribute->attidentity != '\0' ||
            attribute->attgenerated != '\0' || (column.written_null && attribute->attnotnull))
            ok = false;
        if (i < spec.keys)
            layout.key_collation[i] = attribute->attcollation;
    }
    return ok;
}

/* True when writes must insert into the index (false while CREATE INDEX CONCURRENTLY has not made it ready). */
bool ready_for_inserts(Oid index)
{
    HeapTuple tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));
    if (!HeapTupleIsValid(tuple))
        return true; /* dropped meanwhile: judge it as the worst case */
    bool const ready = reinterpret_cast<Form_pg_index>(GETSTRUCT(tuple))->indisready;
    ReleaseSysCache(tuple);
    return ready;
}

/*
 * The primary key, on the key columns in order, btree with the installed
 * operator families, is the only index writes must maintain.  An index that
 * CREATE INDEX CONCURRENTLY (or REINDEX CONCURRENTLY) has created but not
 * yet made ready for inserts needs no entries.  It may become ready while a
 * writer that started after the command's first wait is running; rows that
 * writer stores without an entry are added by the command's validation
 * phase, which waits for that writer's transaction first.  So a call that
 * judged the table before the index became ready may finish as it began.
 */
bool only_primary_key(Relation rel, const TableSpec &spec, TableLayout &layout)
{
    List *indexes = RelationGetIndexList(rel);
    Oid const primary_key = rel->rd_pkindex;
    bool alone = OidIsValid(primary_key) && list_member_oid(indexes, primary_key);
    ListCell *cell = nullptr;
    foreach (cell, indexes) {
        Oid const index = lfirst_oid(cell);
        if (alone && index != primary_key && ready_for_inserts(index))
            alone = false;
    }
    list_free(indexes);
    if (!alone)
        return false;

    Relation index = index_open(primary_key, AccessShareLock);
    Form_pg_index const form = index->rd_index;
    bool ok = index->rd_rel->relam == BTREE_AM_OID && form->indnatts == spec.keys && form->indnkeyatts == spec.keys &&
              form->indisvalid && form->indisready && form->indislive &&
              heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr) &&
              heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr);
    for (int i = 0; ok && i < spec.keys; i++) {
        ok = form->indkey.values[i] == layout.attnum[i] && index->rd_opfamily[i] == spec.key_family[i] &&
             index->rd_indcollation[i] == layout.key_collation[i];
    }
    index_close(index, AccessShareLock);
    layout.primary_key = primary_key;
    return ok;
}

/* True when Citus manages the relation: a row of pg_dist_partition (a catalog only Citus creates). */
bool managed_by_citus(Oid relation)
{
    Oid const catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
    if (!OidIsValid(catalog))
        return false;
    Relation dist = table_open(catalog, AccessShareLock);
    ScanKeyData key;
    ScanKeyInit(&key, 1 /* logicalrelid */, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relation));
    SysScanDesc scan = systable_beginscan(dist, InvalidOid, false, nullptr, 1, &key);
    bool const found = HeapTupleIsValid(systable_getnext(scan));
    systable_endscan(scan);
    table_close(dist, AccessShareLock);
    return found;
}

/* The whole check of table.hpp, on the relation as it is now (its lock is held). */
TableLayout judge(Relation rel, const TableSpec &spec)
{
    TableLayout layout;
    Form_pg_class const form = rel->rd_rel;
    TupleConstr const *constr = RelationGetDescr(rel)->constr;
    /* What only writes must respect (a table that is only read directly ignores it). */
    bool const writable = spec.read_only ||
                          (rel->trigdesc == nullptr && rel->rd_rules == nullptr &&
                           form->relreplident == REPLICA_IDENTITY_DEFAULT &&
                           (constr == nullptr || (constr->num_check == 0 && !constr->has_generated_stored)));
    bool const plain = form->relkind == RELKIND_RELATION && form->relam == HEAP_TABLE_AM_OID &&
                       !form->relispartition && !form->relrowsecurity && writable &&
                       /* the calling role (the tables' owner) may read (and update) it, as a SELECT (UPDATE) checks */
                       pg_class_aclcheck(RelationGetRelid(rel), GetUserId(),
                                         spec.read_only ? ACL_SELECT : ACL_SELECT | ACL_UPDATE) == ACLCHECK_OK;
    bool const columns = columns_as_installed(rel, spec, layout); /* fills layout.attnum in any case */
    layout.direct = plain && columns && only_primary_key(rel, spec, layout);
    layout.distributed = managed_by_citus(RelationGetRelid(rel));
    /* quota.distribute() distributes them all at once; some of them alone is a hand-made state. */
    layout.by_hand = false;
    for (const TableSpec *table : {&kAccounts, &kSlots, &kHolds}) {
        Oid const relation = table_oid(*table);
        bool const distributed = OidIsValid(relation) && managed_by_citus(relation);
        layout.by_hand = layout.by_hand || distributed != layout.distributed;
        if (table == &spec || &spec == &kAccounts)
            layout.distributed = layout.distributed || distributed;
    }
    /* On Citus, only statements that name the team stay on its shard: no direct access, no statement by ctid. */
    layout.direct = layout.direct && !layout.distributed;
    return layout;
}

} // namespace

Oid table_oid(const TableSpec &spec)
{
    if (bound) {
        int const i = shard_index_of(spec);
        if (i >= 0)
            return binding.relation[i];
    }
    return shell_oid(spec);
}

Relation open_table(const TableSpec &spec, LOCKMODE mode, TableLayout &layout)
{
    Oid const relation = table_oid(spec);
    if (!OidIsValid(relation))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation \"quota.%s\" does not exist", spec.name)));
    Relation rel = table_open(relation, mode);
    /*
     * Only now, with the lock taken and invalidations processed, can a
     * verdict be made; one made earlier in this call stands (the table
     * cannot have changed in a way that matters, see table.hpp).
     */
    if (bound && shard_verdicts.size() >= kMaxShardVerdicts && shard_verdicts.count(relation) == 0)
        shard_verdicts.clear(); /* shards moved here and away many times: start again */
    Verdict &verdict = bound ? shard_verdicts[relation] : verdicts[index_of(spec)];
    if (verdict.relation != relation) {
        verdict = Verdict{};
        verdict.relation = relation;
    }
    if (!verdict.judged || (verdict.stale && verdict.call != current_call)) {
        verdict.stale = false; /* before judging: an invalidation while judging makes it stale again */
        TableLayout const judged = judge(rel, spec);
        verdict.layout = judged;
        verdict.judged = true;
    }
    verdict.call = current_call; /* pinned: this call keeps it even if the table changes meanwhile */
    layout = verdict.layout;
    if (layout.by_hand)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("quota's tables are distributed by hand"),
                        errdetail("Citus distributes some of quota.accounts, quota.holds and quota.slots and not the "
                                  "others; quota's calls would not stay on one team's rows."),
                        errhint("Undistribute them, then run SELECT quota.distribute() on the coordinator.")));
    return rel;
}

void announce_change(const char *table)
{
    bridge::guarded([table] {
        Oid const relation = get_relname_relid(table, get_namespace_oid("quota", false));
        if (OidIsValid(relation) && citus_distributed())
            CacheInvalidateRelcacheByRelid(relation);
    });
}

namespace {

bool citus_distributed_now()
{
    /*
     * Once per call, and again in each transaction: a caller may ask before
     * its call begins (set_slots(), set_parent(), the links of a chain), and
     * quota.distribute() may have committed since the last call.
     */
    static uint64 checked_in = 0;
    static LocalTransactionId checked_xact = InvalidLocalTransactionId;
    static bool distributed = false;
    if (checked_in != current_call || current_call == 0 || checked_xact != MyProc->lxid) {
        Oid const relation = shell_oid(kAccounts);
        distributed = OidIsValid(relation) && managed_by_citus(relation);
        checked_in = current_call;
        checked_xact = MyProc->lxid;
    }
    return distributed;
}

} // namespace

bool citus_mode()
{
    return !bound && citus_distributed_now();
}

bool citus_distributed()
{
    return citus_distributed_now();
}

void bind_shards(const ShardBinding *shards)
{
    register_callback();
    bound = shards != nullptr;
    if (bound)
        binding = *shards;
}

const ShardBinding *bound_shards()
{
    return bound ? &binding : nullptr;
}

void start_call(bool writing)
{
    current_call++;
    if (!writing)
        return;
    for (const TableSpec *spec : {&kAccounts, &kSlots, &kHolds}) {
        Oid const relation = table_oid(*spec);
        if (OidIsValid(relation))
            LockRelationOid(relation, RowExclusiveLock);
    }
}

IndexScanDesc begin_key_scan(Relation rel, Relation index, const TableSpec &spec, const TableLayout &layout,
                             const Datum *keys, int nkeys, Snapshot snapshot, ScanKeyData *scan_keys)
{
    for (int i = 0; i < nkeys; i++) {
        RegProcedure const equal = spec.column[i].type == TEXTOID ? F_TEXTEQ : F_INT4EQ;
        ScanKeyEntryInitialize(&scan_keys[i], 0, static_cast<AttrNumber>(i + 1), BTEqualStrategyNumber, InvalidOid,
                               layout.key_collation[i], equal, keys[i]);
    }
    IndexScanDesc scan = index_beginscan(rel, index, snapshot, nkeys, 0);
    index_rescan(scan, scan_keys, nkeys, nullptr, 0);
    return scan;
}

bool find_row(Relation rel, const TableSpec &spec, const TableLayout &layout, const Datum *keys, Snapshot snapshot,
              TupleTableSlot *slot)
{
    Relation index = index_open(layout.primary_key, AccessShareLock);
    ScanKeyData scan_keys[kMaxKeyColumns];
    IndexScanDesc scan = begin_key_scan(rel, index, spec, layout, keys, spec.keys, snapshot, scan_keys);
    bool const found = index_getnext_slot(scan, ForwardScanDirection, slot);
    index_endscan(scan);
    index_close(index, NoLock);
    return found;
}

void rewrite_row(Relation rel, const TableLayout &layout, const ItemPointerData &row, int first, int count,
                 const Datum *values, const bool *isnull)
{
    Assert(layout.direct);
    /*
     * A publication may be added to the table at any time (ALTER PUBLICATION
     * takes no lock that a writer holds): check, as the executor does, that
     * it allows updates (row filters and column lists within the replica
     * identity).
     */
    CheckCmdReplicaIdentity(rel, CMD_UPDATE);
    int columns[kMaxTableColumns];
    Datum column_values[kMaxTableColumns];
    bool column_nulls[kMaxTableColumns];
    int written = 0;
    for (int i = 0; i < count; i++) {
        if (layout.attnum[first + i] == 0)
            continue; /* an optional column this database does not have yet */
        columns[written] = layout.attnum[first + i];
        column_values[written] = values[i];
        column_nulls[written] = isnull[i];
        written++;
    }

    TupleTableSlot *slot = table_slot_create(rel, nullptr);
    ItemPointerData tid = row;
    if (!table_tuple_fetch_row_version(rel, &tid, SnapshotAny, slot))
        elog(ERROR, "row of %s vanished while locked", RelationGetRelationName(rel));
    bool free_old = false;
    HeapTuple old = ExecFetchSlotHeapTuple(slot, false, &free_old);
    HeapTuple updated = heap_modify_tuple_by_cols(old, RelationGetDescr(rel), written, columns, column_values,
                                                  column_nulls);
    simple_heap_update(rel, &tid, updated);

    if (!HeapTupleIsHeapOnly(updated)) {
        /* Not a HOT update: the new version needs its own primary-key entry. */
        Relation index = index_open(layout.primary_key, RowExclusiveLock);
        IndexInfo *info = BuildIndexInfo(index);
        TupleTableSlot *fresh = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
        ExecStoreHeapTuple(updated, fresh, false);
        Datum key_values[INDEX_MAX_KEYS];
        bool key_isnull[INDEX_MAX_KEYS];
        FormIndexDatum(info, fresh, nullptr, key_values, key_isnull);
        index_insert(index, key_values, key_isnull, &updated->t_self, rel, UNIQUE_CHECK_YES, true, info);
        ExecDropSingleTupleTableSlot(fresh);
        index_close(index, NoLock);
    }
    if (free_old)
        heap_freetuple(old);
    heap_freetuple(updated);
    ExecDropSingleTupleTableSlot(slot);
}

} // namespace quota::storage
