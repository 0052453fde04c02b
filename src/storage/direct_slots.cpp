/*
 * direct_slots.cpp — the fast path's direct access to quota.slots: read a
 * slot's newest version, lock exactly that version, write it back, and sum
 * an account's slots for a reply, without SQL or the executor.
 *
 * "Lock exactly that version" is what lets a call that finds its slot
 * cannot serve it go to the ledger's path holding nothing: the lock is
 * taken with table_tuple_lock() *without* following the update chain, so
 * it either locks the version the caller has already read and judged, or
 * reports that a newer one exists (then the caller reads again).  Every
 * change to a slot's holds also writes the slot, so a locked version that
 * is still the newest is consistent with the holds read after it.
 *
 * Used only while quota.slots is as the extension made it (its primary key
 * alone, no triggers, no row security); otherwise slotted accounts take
 * the ledger's SQL path for every call.
 */
#include "storage/store.hpp"

#include "bridge/guard.hpp"
#include "storage/direct.hpp"


namespace quota::storage {

namespace {

constexpr int kSlotColumns = 7;
const char *const kSlotColumnNames[kSlotColumns] = {"slot", "window_start", "resets_at", "used",
                                                     "held", "share",        "next_expiry"};

struct SlotsTable {
    Oid relation = InvalidOid;
    Oid primary_key = InvalidOid;
    AttrNumber attnums[kSlotColumns] = {};
    bool as_installed = false;
};

SlotsTable slots_cache;
bool slots_callback_registered = false;

void forget_slots(Datum, Oid relid)
{
    if (relid == InvalidOid || relid == slots_cache.relation)
        slots_cache = SlotsTable{};
}

/* A copy (see accounts_table() in direct.cpp).  Call inside guarded(). */
SlotsTable slots_table()
{
    if (OidIsValid(slots_cache.relation))
        return slots_cache;
    if (!slots_callback_registered) {
        CacheRegisterRelcacheCallback(forget_slots, (Datum) 0);
        slots_callback_registered = true;
    }
    SlotsTable found;
    found.relation = get_relname_relid("slots", get_namespace_oid("quota", false));
    if (!OidIsValid(found.relation))
        return found; /* a database at 1.0: no slots */
    Relation rel = table_open(found.relation, AccessShareLock);
    found.primary_key = RelationGetPrimaryKeyIndex(rel);
    List *indexes = RelationGetIndexList(rel);
    found.as_installed = list_length(indexes) == 1 && rel->trigdesc == nullptr && !rel->rd_rel->relrowsecurity &&
                         OidIsValid(found.primary_key);
    list_free(indexes);
    column_numbers(rel, kSlotColumnNames, kSlotColumns, found.attnums);
    for (int i = 0; i < kSlotColumns; i++) {
        if (found.attnums[i] == 0)
            found.as_installed = false;
    }
    table_close(rel, NoLock);
    slots_cache = found;
    return slots_cache;
}

Slot slot_in(const SlotsTable &table, TupleTableSlot *tuple)
{
    slot_getallattrs(tuple);
    auto get = [&](int i, bool &isnull) {
        int const at = table.attnums[i] - 1;
        isnull = tuple->tts_isnull[at];
        return tuple->tts_values[at];
    };
    Slot slot;
    bool isnull = false;
    slot.number = DatumGetInt32(get(0, isnull));
    slot.window_start = DatumGetTimestampTz(get(1, isnull));
    Datum const resets_at = get(2, isnull);
    slot.has_resets_at = !isnull;
    slot.resets_at = isnull ? 0 : DatumGetTimestampTz(resets_at);
    slot.used = DatumGetInt64(get(3, isnull));
    slot.held = DatumGetInt64(get(4, isnull));
    Datum const share = get(5, isnull);
    slot.unlimited = isnull;
    slot.share = isnull ? 0 : DatumGetInt64(share);
    Datum const next_expiry = get(6, isnull);
    slot.has_next_expiry = !isnull;
    slot.next_expiry = isnull ? 0 : DatumGetTimestampTz(next_expiry);
    return slot;
}

/* Scan the primary key for (team, resource[, slot]).  Call inside guarded(). */
IndexScanDesc begin_scan(const SlotsTable &table, Relation rel, Relation index, AccountKey key, const int32 *number,
                         Snapshot snapshot, ScanKeyData *keys)
{
    ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid, index->rd_indcollation[0], F_TEXTEQ,
                           key.team);
    ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, index->rd_indcollation[1], F_TEXTEQ,
                           key.resource);
    int nkeys = 2;
    if (number != nullptr) {
        ScanKeyEntryInitialize(&keys[2], 0, 3, BTEqualStrategyNumber, InvalidOid, InvalidOid, F_INT4EQ,
                               Int32GetDatum(*number));
        nkeys = 3;
    }
    (void) table;
    IndexScanDesc scan = index_beginscan(rel, index, snapshot, nkeys, 0);
    index_rescan(scan, keys, nkeys, nullptr, 0);
    return scan;
}

/* A fresh snapshot that also sees this transaction's own earlier changes.  Call inside guarded(). */
Snapshot fresh_snapshot()
{
    CommandCounterIncrement();
    return RegisterSnapshot(GetTransactionSnapshot());
}

} // namespace

bool slots_direct()
{
    return bridge::guarded_value([] { return slots_table().as_installed; });
}

bool peek_slot(AccountKey key, int32 number, SlotRow &out)
{
    return bridge::guarded_value([&] {
        SlotsTable const table = slots_table();
        Snapshot snapshot = fresh_snapshot();
        Relation rel = table_open(table.relation, RowExclusiveLock);
        Relation index = index_open(table.primary_key, AccessShareLock);
        TupleTableSlot *tuple = table_slot_create(rel, nullptr);
        ScanKeyData keys[3];
        IndexScanDesc scan = begin_scan(table, rel, index, key, &number, snapshot, keys);
        bool const found = index_getnext_slot(scan, ForwardScanDirection, tuple);
        if (found) {
            out.slot = slot_in(table, tuple);
            out.row = tuple->tts_tid;
        }
        index_endscan(scan);
        ExecDropSingleTupleTableSlot(tuple);
        index_close(index, NoLock);
        table_close(rel, NoLock);
        UnregisterSnapshot(snapshot);
        return found;
    });
}

SlotLock lock_seen_slot(const SlotRow &row, bool wait)
{
    return bridge::guarded_value([&] {
        SlotsTable const table = slots_table();
        Relation rel = table_open(table.relation, RowExclusiveLock);
        TupleTableSlot *tuple = table_slot_create(rel, nullptr);
        ItemPointerData tid = row.row;
        TM_FailureData failure;
        /* No TUPLE_LOCK_FLAG_FIND_LAST_VERSION: this version or nothing. */
        TM_Result const result = table_tuple_lock(rel, &tid, GetActiveSnapshot(), tuple, GetCurrentCommandId(false),
                                                  LockTupleExclusive, wait ? LockWaitBlock : LockWaitSkip, 0, &failure);
        ExecDropSingleTupleTableSlot(tuple);
        table_close(rel, NoLock);
        switch (result) {
        case TM_Ok:
            return SlotLock::Taken;
        case TM_WouldBlock:
            return SlotLock::Busy;
        case TM_Updated:
        case TM_Deleted:
            if (IsolationUsesXactSnapshot())
                ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                                errmsg("could not serialize access due to concurrent update")));
            return SlotLock::Changed;
        default:
            elog(ERROR, "unexpected result %d locking a quota slot row", static_cast<int>(result));
        }
        return SlotLock::Changed;
    });
}

void write_slot(const SlotRow &row)
{
    bridge::guarded([&] {
        SlotsTable const table = slots_table();
        Relation rel = table_open(table.relation, RowExclusiveLock);
        Slot const &slot = row.slot;
        Datum values[kSlotColumns] = {Int32GetDatum(slot.number),      TimestampTzGetDatum(slot.window_start),
                                      TimestampTzGetDatum(slot.resets_at), Int64GetDatum(slot.used),
                                      Int64GetDatum(slot.held),        Int64GetDatum(slot.share),
                                      TimestampTzGetDatum(slot.next_expiry)};
        bool isnull[kSlotColumns] = {false, false, !slot.has_resets_at, false, false, slot.unlimited,
                                     !slot.has_next_expiry};
        int columns[kSlotColumns];
        for (int i = 0; i < kSlotColumns; i++)
            columns[i] = table.attnums[i];
        rewrite_row(rel, table.primary_key, row.row, kSlotColumns, columns, values, isnull);
        table_close(rel, NoLock);
    });
}

SlotTotals slot_totals(AccountKey key, TimestampTz now, Snapshot snapshot, Account &account)
{
    SlotTotals totals;
    bool overflow = false;
    bridge::guarded([&] {
        SlotsTable const table = slots_table();
        /* The account row under the same snapshot as its slots: one consistent state. */
        totals.has_account = fetch_account_in(key, snapshot, account);
        Relation rel = table_open(table.relation, AccessShareLock);
        Relation index = index_open(table.primary_key, AccessShareLock);
        TupleTableSlot *tuple = table_slot_create(rel, nullptr);
        ScanKeyData keys[3];
        IndexScanDesc scan = begin_scan(table, rel, index, key, nullptr, snapshot, keys);
        while (index_getnext_slot(scan, ForwardScanDirection, tuple)) {
            Slot const slot = slot_in(table, tuple);
            /*
             * A slot's used counts only in the newest window a current slot
             * has: one whose window ended counts none, and a transaction that
             * started just before a rollover may see slots already rolled
             * over next to slots not yet.
             */
            if (slot_current(slot, now)) {
                if (!totals.has_window || slot.window_start > totals.window_start) {
                    totals.has_window = true;
                    totals.window_start = slot.window_start;
                    totals.used = 0;
                }
                if (slot.window_start == totals.window_start &&
                    __builtin_add_overflow(totals.used, slot.used, &totals.used))
                    overflow = true;
            }
            if (__builtin_add_overflow(totals.held, slot.held, &totals.held))
                overflow = true;
            if (slot.has_next_expiry && (!totals.has_next_expiry || slot.next_expiry < totals.next_expiry)) {
                totals.has_next_expiry = true;
                totals.next_expiry = slot.next_expiry;
            }
        }
        index_endscan(scan);
        ExecDropSingleTupleTableSlot(tuple);
        index_close(index, NoLock);
        table_close(rel, NoLock);
    });
    if (overflow)
        throw Error(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "credit total out of range");
    return totals;
}

} // namespace quota::storage
