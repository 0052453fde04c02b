/*
 * direct.cpp — direct access to quota.accounts: the primary-key lookups and
 * the row lock + update of the spending calls, without SQL or the executor,
 * whenever table.hpp's check allows it (judged after the table is locked,
 * on the relation that is then read and written).
 *
 * The lock follows SELECT ... FOR UPDATE: find the row under a fresh
 * snapshot, then table_tuple_lock(); in READ COMMITTED it waits for a
 * concurrent updater and locks the newest version (as EvalPlanQual does),
 * under REPEATABLE READ or SERIALIZABLE a concurrent update is a
 * serialization failure.  The update rewrites the locked row (rewrite_row).
 */
#include "storage/direct.hpp"

#include "bridge/guard.hpp"
#include "storage/columns.hpp"
#include "storage/schema.hpp"

namespace quota::storage {

namespace {

Account account_in(const TableLayout &layout, TupleTableSlot *slot)
{
    slot_getallattrs(slot);
    return decode_account([&](int i, bool *isnull) {
        if (layout.attnum[kAccountFirstColumn + i] == 0) {
            *isnull = true; /* a database at 1.0: no slots column */
            return (Datum) 0;
        }
        return slot_column(layout, slot, kAccountFirstColumn + i, isnull);
    });
}

enum class Locking { Locked, Gone, Unsure, Busy };

/*
 * Lock the row version at `tid`, or the newest version of its update chain
 * in READ COMMITTED, as FOR UPDATE does; under REPEATABLE READ or
 * SERIALIZABLE a concurrent update is a serialization failure.  Unsure: the
 * version is not one this call may lock (it must look the row up again).
 * Call inside guarded().
 */
Locking lock_version(Relation rel, ItemPointerData tid, Snapshot snapshot, TupleTableSlot *slot, bool wait)
{
    bool const transaction_snapshot = IsolationUsesXactSnapshot();
    TM_FailureData failure;
    TM_Result const result =
        table_tuple_lock(rel, &tid, snapshot, slot, GetCurrentCommandId(false), LockTupleExclusive, wait ? LockWaitBlock : LockWaitSkip,
                         transaction_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure);
    switch (result) {
    case TM_Ok:
        return Locking::Locked;
    case TM_WouldBlock:
        return Locking::Busy;
    case TM_Updated:
    case TM_Deleted:
        if (transaction_snapshot)
            ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                            errmsg("could not serialize access due to concurrent update")));
        if (result == TM_Updated)
            elog(ERROR, "quota account row updated while following its update chain");
        return Locking::Gone; /* deleted since we looked */
    case TM_SelfModified:
    case TM_Invisible:
        return Locking::Unsure;
    default:
        elog(ERROR, "unexpected result %d locking a quota account row", static_cast<int>(result));
    }
    return Locking::Unsure;
}

/*
 * Lock the account row.  `seen` is where a fresh snapshot taken in this
 * call (after CommandCounterIncrement, so it saw the transaction's own
 * changes) found it: that version, or following its update chain the
 * newest, is what a new look would find, so it is locked directly.  When it
 * is gone, or there is no `seen`, the row is looked up under a new fresh
 * snapshot, as SELECT ... FOR UPDATE does.  Call inside guarded().
 */
RowLock lock_row(Relation rel, const TableLayout &layout, AccountKey key, const ItemPointerData *seen, bool wait,
                 Account &account, ItemPointerData &row)
{
    TupleTableSlot *slot = table_slot_create(rel, nullptr);
    Locking locking = Locking::Unsure;
    if (seen != nullptr && ItemPointerIsValid(seen))
        locking = lock_version(rel, *seen, GetActiveSnapshot(), slot, wait);
    if (locking != Locking::Locked && locking != Locking::Busy) { /* not there any more: a new row may be (deleted and created again) */
        CommandCounterIncrement(); /* see this transaction's own earlier changes */
        Snapshot snapshot = RegisterSnapshot(GetTransactionSnapshot());
        Datum const keys[2] = {key.team, key.resource};
        locking = find_row(rel, kAccounts, layout, keys, snapshot, slot)
                      ? lock_version(rel, slot->tts_tid, snapshot, slot, wait)
                      : Locking::Gone;
        UnregisterSnapshot(snapshot);
        if (locking == Locking::Unsure)
            elog(ERROR, "quota account row invisible to the snapshot that found it");
    }
    if (locking == Locking::Locked) {
        account = account_in(layout, slot);
        row = slot->tts_tid;
    }
    ExecDropSingleTupleTableSlot(slot);
    return locking == Locking::Locked ? RowLock::Locked : locking == Locking::Busy ? RowLock::Busy : RowLock::Missing;
}

} // namespace

bool fetch_account_direct(AccountKey key, Snapshot snapshot, LOCKMODE mode, Account &account, bool &found,
                          ItemPointerData *where)
{
    return bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kAccounts, mode, layout);
        if (layout.direct) {
            TupleTableSlot *slot = table_slot_create(rel, nullptr);
            Datum const keys[2] = {key.team, key.resource};
            found = find_row(rel, kAccounts, layout, keys, snapshot != nullptr ? snapshot : GetActiveSnapshot(), slot);
            if (found) {
                account = account_in(layout, slot);
                if (where != nullptr)
                    *where = slot->tts_tid;
            }
            ExecDropSingleTupleTableSlot(slot);
        }
        table_close(rel, NoLock);
        return layout.direct;
    });
}

bool lock_account_direct(AccountKey key, const ItemPointerData *seen, bool wait, Account &account, ItemPointerData &row,
                         RowLock &found)
{
    return bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kAccounts, RowExclusiveLock, layout);
        if (layout.direct)
            found = lock_row(rel, layout, key, seen, wait, account, row);
        table_close(rel, NoLock);
        return layout.direct;
    });
}

bool update_account_direct(const ItemPointerData &row, const Account &account)
{
    return bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kAccounts, RowExclusiveLock, layout);
        if (layout.direct) {
            Datum values[kAccountColumns];
            char nulls[kAccountColumns];
            bool isnull[kAccountColumns];
            encode_account(account, values, nulls);
            for (int i = 0; i < kAccountColumns; i++)
                isnull[i] = nulls[i] == 'n';
            rewrite_row(rel, layout, row, kAccountFirstColumn, kAccountColumns, values, isnull);
        }
        table_close(rel, NoLock);
        return layout.direct;
    });
}

bool schema_has_slots()
{
    /* quota.slots came with the columns (accounts.slots, holds.slot) in one update script: no table lock needed. */
    return bridge::guarded_value([] { return OidIsValid(table_oid(kSlots)); });
}

Oid tables_owner()
{
    return bridge::guarded_value([] {
        /*
         * By name, from the syscache, every call: this runs before the call
         * begins (and takes no lock), so no cached OID may be trusted here
         * (DROP and CREATE EXTENSION make new tables).
         */
        Oid const relation = get_relname_relid("accounts", get_namespace_oid("quota", false));
        if (!OidIsValid(relation))
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation \"quota.accounts\" does not exist")));
        HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relation));
        if (!HeapTupleIsValid(tuple))
            elog(ERROR, "cache lookup failed for relation %u", relation);
        Oid const owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
        ReleaseSysCache(tuple);
        return owner;
    });
}

} // namespace quota::storage
