/*
 * direct.cpp — direct access to quota.accounts: the primary-key lookups and
 * the row lock + update of the spending calls, without SQL or the executor.
 *
 * The lock follows SELECT ... FOR UPDATE: find the row under a fresh
 * snapshot, then table_tuple_lock(); in READ COMMITTED it waits for a
 * concurrent updater and locks the newest version (as EvalPlanQual does),
 * under REPEATABLE READ or SERIALIZABLE a concurrent update is a
 * serialization failure.  The update rewrites the locked row with
 * simple_heap_update() and adds the primary-key entry when it is not HOT.
 *
 * Writes go this way only while the table is as the extension made it (its
 * primary key alone, no triggers, no row security); otherwise the SQL
 * statements of store.cpp run, so nothing added to the table is bypassed.
 */
#include "storage/direct.hpp"

#include "bridge/guard.hpp"
#include "storage/columns.hpp"

namespace quota::storage {

namespace {

/*
 * Direct access: quota.accounts, its primary key and its columns' numbers,
 * looked up once per backend and forgotten when its relcache entry is
 * invalidated (ALTER TABLE, ALTER ... OWNER, DROP/CREATE EXTENSION).
 */
struct AccountsTable {
    Oid relation = InvalidOid;
    Oid primary_key = InvalidOid;
    AttrNumber attnums[kAccountColumns] = {};
    Oid owner = InvalidOid; /* the role the extension's tables belong to */
    int columns = 0;        /* kAccountColumns, or kAccountColumns_1_0 in a database still at 1.0 */
    /* Only the primary key, no triggers, no row security: as the extension made it. */
    bool as_installed = false;
};

AccountsTable accounts;
bool relcache_callback_registered = false;

void forget_accounts(Datum, Oid relid)
{
    if (relid == InvalidOid || relid == accounts.relation)
        accounts = AccountsTable{};
}

/*
 * A copy, not a reference: opening or locking a relation processes
 * invalidation messages, which may reset the cache in the middle of a call.
 * Call inside guarded().
 */
AccountsTable accounts_table()
{
    if (OidIsValid(accounts.relation))
        return accounts;
    if (!relcache_callback_registered) {
        CacheRegisterRelcacheCallback(forget_accounts, (Datum) 0);
        relcache_callback_registered = true;
    }
    AccountsTable found;
    found.relation = get_relname_relid("accounts", get_namespace_oid("quota", false));
    if (!OidIsValid(found.relation))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation \"quota.accounts\" does not exist")));
    Relation rel = table_open(found.relation, AccessShareLock);
    found.primary_key = RelationGetPrimaryKeyIndex(rel);
    found.owner = rel->rd_rel->relowner;
    List *indexes = RelationGetIndexList(rel);
    found.as_installed = list_length(indexes) == 1 && rel->trigdesc == nullptr && !rel->rd_rel->relrowsecurity;
    list_free(indexes);
    column_numbers(rel, kAccountColumnNames, kAccountColumns, found.attnums);
    for (int i = 0; i < kAccountColumns_1_0; i++) {
        if (found.attnums[i] == 0)
            elog(ERROR, "column \"%s\" of quota.accounts is missing", kAccountColumnNames[i]);
    }
    found.columns = found.attnums[kAccountColumns - 1] != 0 ? kAccountColumns : kAccountColumns_1_0;
    table_close(rel, NoLock);
    if (!OidIsValid(found.primary_key))
        elog(ERROR, "quota.accounts has no primary key");
    accounts = found;
    return accounts;
}

/* Look the account up under `snapshot`; on success the slot holds its row.  Call inside guarded(). */
bool find_account(const AccountsTable &table, Relation rel, AccountKey key, Snapshot snapshot, TupleTableSlot *slot)
{
    Relation index = index_open(table.primary_key, AccessShareLock);
    /* Equality on (team, resource), compared in the index's own collations. */
    ScanKeyData keys[2];
    ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid, index->rd_indcollation[0], F_TEXTEQ,
                           key.team);
    ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, index->rd_indcollation[1], F_TEXTEQ,
                           key.resource);
    IndexScanDesc scan = index_beginscan(rel, index, snapshot, 2, 0);
    index_rescan(scan, keys, 2, nullptr, 0);
    bool const found = index_getnext_slot(scan, ForwardScanDirection, slot);
    index_endscan(scan);
    index_close(index, NoLock);
    return found;
}

Account account_in(const AccountsTable &table, TupleTableSlot *slot)
{
    slot_getallattrs(slot);
    return decode_account([&](int i, bool *isnull) {
        if (i >= table.columns) {
            *isnull = true;
            return (Datum) 0;
        }
        int const at = table.attnums[i] - 1;
        *isnull = slot->tts_isnull[at];
        return slot->tts_values[at];
    });
}

/* Call inside guarded(). */
bool lock_row(const AccountsTable &table, AccountKey key, Account &account, ItemPointerData &row)
{
    CommandCounterIncrement(); /* see this transaction's own earlier changes */
    Snapshot snapshot = RegisterSnapshot(GetTransactionSnapshot());
    Relation rel = table_open(table.relation, RowExclusiveLock);
    TupleTableSlot *slot = table_slot_create(rel, nullptr);
    bool found = find_account(table, rel, key, snapshot, slot);
    if (found) {
        ItemPointerData tid = slot->tts_tid;
        bool const transaction_snapshot = IsolationUsesXactSnapshot();
        TM_FailureData failure;
        TM_Result const result =
            table_tuple_lock(rel, &tid, snapshot, slot, GetCurrentCommandId(false), LockTupleExclusive, LockWaitBlock,
                             transaction_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure);
        switch (result) {
        case TM_Ok:
            break;
        case TM_Updated:
        case TM_Deleted:
            if (transaction_snapshot)
                ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                                errmsg("could not serialize access due to concurrent update")));
            if (result == TM_Updated)
                elog(ERROR, "quota account row updated while following its update chain");
            found = false; /* deleted since we looked */
            break;
        default:
            elog(ERROR, "unexpected result %d locking a quota account row", static_cast<int>(result));
        }
    }
    if (found) {
        account = account_in(table, slot);
        row = slot->tts_tid;
    }
    ExecDropSingleTupleTableSlot(slot);
    table_close(rel, NoLock);
    UnregisterSnapshot(snapshot);
    return found;
}

/* Call inside guarded(), with the row locked by lock_row(). */
void update_row(const AccountsTable &table, const ItemPointerData &row, const Account &account)
{
    Relation rel = table_open(table.relation, RowExclusiveLock);
    Datum values[kAccountColumns];
    char nulls[kAccountColumns];
    bool isnull[kAccountColumns];
    int columns[kAccountColumns];
    encode_account(account, values, nulls);
    for (int i = 0; i < table.columns; i++) {
        isnull[i] = nulls[i] == 'n';
        columns[i] = table.attnums[i];
    }
    rewrite_row(rel, table.primary_key, row, table.columns, columns, values, isnull);
    table_close(rel, NoLock);
}

} // namespace

void column_numbers(Relation rel, const char *const *names, int count, AttrNumber *attnums)
{
    TupleDesc const desc = RelationGetDescr(rel);
    for (int i = 0; i < count; i++) {
        attnums[i] = 0;
        for (int a = 0; a < desc->natts; a++) {
            Form_pg_attribute const attribute = TupleDescAttr(desc, a);
            if (!attribute->attisdropped && std::strcmp(NameStr(attribute->attname), names[i]) == 0)
                attnums[i] = attribute->attnum;
        }
    }
}

void rewrite_row(Relation rel, Oid primary_key, const ItemPointerData &row, int count, const int *columns,
                 const Datum *values, const bool *isnull)
{
    TupleTableSlot *slot = table_slot_create(rel, nullptr);
    ItemPointerData tid = row;
    if (!table_tuple_fetch_row_version(rel, &tid, SnapshotAny, slot))
        elog(ERROR, "row of %s vanished while locked", RelationGetRelationName(rel));
    bool free_old = false;
    HeapTuple old = ExecFetchSlotHeapTuple(slot, false, &free_old);
    HeapTuple updated = heap_modify_tuple_by_cols(old, RelationGetDescr(rel), count, const_cast<int *>(columns),
                                                  const_cast<Datum *>(values), const_cast<bool *>(isnull));
    simple_heap_update(rel, &tid, updated);

    if (!HeapTupleIsHeapOnly(updated)) {
        /* Not a HOT update: the new version needs its own primary-key entry. */
        Relation index = index_open(primary_key, RowExclusiveLock);
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

bool fetch_account_in(AccountKey key, Snapshot snapshot, Account &account)
{
    AccountsTable const table = accounts_table();
    Relation rel = table_open(table.relation, AccessShareLock);
    TupleTableSlot *slot = table_slot_create(rel, nullptr);
    bool const found = find_account(table, rel, key, snapshot, slot);
    if (found)
        account = account_in(table, slot);
    ExecDropSingleTupleTableSlot(slot);
    table_close(rel, NoLock);
    return found;
}

bool fetch_account(AccountKey key, Account &account)
{
    bool found = false;
    bridge::guarded([&] {
        AccountsTable const table = accounts_table();
        Relation rel = table_open(table.relation, AccessShareLock);
        TupleTableSlot *slot = table_slot_create(rel, nullptr);
        found = find_account(table, rel, key, GetActiveSnapshot(), slot);
        if (found)
            account = account_in(table, slot);
        ExecDropSingleTupleTableSlot(slot);
        table_close(rel, NoLock);
    });
    return found;
}

bool lock_account_direct(AccountKey key, Account &account, ItemPointerData &row, bool &found)
{
    return bridge::guarded_value([&] {
        AccountsTable const table = accounts_table();
        if (table.as_installed)
            found = lock_row(table, key, account, row);
        return table.as_installed;
    });
}

bool update_account_direct(const ItemPointerData &row, const Account &account)
{
    return bridge::guarded_value([&] {
        AccountsTable const table = accounts_table();
        if (table.as_installed)
            update_row(table, row, account);
        return table.as_installed;
    });
}

bool schema_has_slots()
{
    return bridge::guarded_value([] { return accounts_table().columns == kAccountColumns; });
}

Oid tables_owner()
{
    return bridge::guarded_value([] { return accounts_table().owner; });
}

} // namespace quota::storage
