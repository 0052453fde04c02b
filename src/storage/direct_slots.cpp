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
 * Reads and writes are direct only while table.hpp's check passes on
 * quota.slots (judged after the writing call has locked it); otherwise a
 * slot is read and written with SQL (slots.cpp), and replies sum the slots
 * with SQL.  Locking one version is the same either way: table_tuple_lock()
 * touches no index, constraint or column.
 */
#include "storage/store.hpp"

#include "bridge/guard.hpp"
#include "storage/direct.hpp"
#include "storage/schema.hpp"

namespace quota::storage {

namespace {

Slot slot_in(const TableLayout &layout, TupleTableSlot *tuple)
{
    slot_getallattrs(tuple);
    auto get = [&](int i, bool &isnull) { return slot_column(layout, tuple, i, &isnull); };
    Slot slot;
    bool isnull = false;
    slot.number = DatumGetInt32(get(2, isnull));
    slot.window_start = DatumGetTimestampTz(get(3, isnull));
    Datum const resets_at = get(4, isnull);
    slot.has_resets_at = !isnull;
    slot.resets_at = isnull ? 0 : DatumGetTimestampTz(resets_at);
    slot.used = DatumGetInt64(get(5, isnull));
    slot.held = DatumGetInt64(get(6, isnull));
    Datum const share = get(7, isnull);
    slot.unlimited = isnull;
    slot.share = isnull ? 0 : DatumGetInt64(share);
    Datum const next_expiry = get(8, isnull);
    slot.has_next_expiry = !isnull;
    slot.next_expiry = isnull ? 0 : DatumGetTimestampTz(next_expiry);
    return slot;
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
    return bridge::guarded_value([] {
        if (!OidIsValid(table_oid(kSlots)))
            return false; /* a database at 1.0 */
        TableLayout layout;
        Relation rel = open_table(kSlots, RowExclusiveLock, layout);
        table_close(rel, NoLock);
        return layout.direct;
    });
}

bool read_slot(AccountKey key, int32 number, Snapshot snapshot, Intent intent, SlotRow &out)
{
    bool direct = false;
    bool const found = bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kSlots, intent == Intent::Write ? RowExclusiveLock : AccessShareLock, layout);
        bool found = false;
        direct = layout.direct;
        if (layout.direct) {
            TupleTableSlot *tuple = table_slot_create(rel, nullptr);
            Datum const keys[3] = {key.team, key.resource, Int32GetDatum(number)};
            found = find_row(rel, kSlots, layout, keys, snapshot, tuple);
            if (found) {
                out.slot = slot_in(layout, tuple);
                out.row = tuple->tts_tid;
            }
            ExecDropSingleTupleTableSlot(tuple);
        }
        table_close(rel, NoLock);
        return found;
    });
    return direct ? found : read_slot_sql(key, number, snapshot, out);
}

bool peek_slot(AccountKey key, int32 number, SlotRow &out)
{
    Snapshot const snapshot = bridge::guarded_value([] { return fresh_snapshot(); });
    bool const found = read_slot(key, number, snapshot, Intent::Write, out);
    bridge::guarded([snapshot] { UnregisterSnapshot(snapshot); });
    return found;
}

namespace {

SlotLock lock_seen_slot_once(const SlotRow &row, bool wait, TransactionId *holder);

} // namespace

SlotLock lock_seen_slot(const SlotRow &row, bool wait, TransactionId *holder)
{
    SlotLock const got = lock_seen_slot_once(row, wait && !impatient(), holder);
    if (got == SlotLock::Busy && wait)
        throw WouldWait(); /* impatient (store.hpp) */
    return got;
}

namespace {

SlotLock lock_seen_slot_once(const SlotRow &row, bool wait, TransactionId *holder)
{
    return bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kSlots, RowExclusiveLock, layout);
        TupleTableSlot *tuple = table_slot_create(rel, nullptr);
        ItemPointerData tid = row.row;
        TM_FailureData failure;
        failure.xmax = InvalidTransactionId;
        /* No TUPLE_LOCK_FLAG_FIND_LAST_VERSION: this version or nothing. */
        TM_Result const result = table_tuple_lock(rel, &tid, GetActiveSnapshot(), tuple, GetCurrentCommandId(false),
                                                  LockTupleExclusive, wait ? LockWaitBlock : LockWaitSkip, 0, &failure);
        ExecDropSingleTupleTableSlot(tuple);
        table_close(rel, NoLock);
        switch (result) {
        case TM_Ok:
            return SlotLock::Taken;
        case TM_WouldBlock:
            if (holder != nullptr)
                *holder = failure.xmax;
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

} // namespace

void write_slot(const SlotRow &row)
{
    bool const direct = bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kSlots, RowExclusiveLock, layout);
        if (!layout.direct) {
            table_close(rel, NoLock);
            return false;
        }
        Slot const &slot = row.slot;
        Datum const values[] = {TimestampTzGetDatum(slot.window_start), TimestampTzGetDatum(slot.resets_at),
                                Int64GetDatum(slot.used),                Int64GetDatum(slot.held),
                                Int64GetDatum(slot.share),               TimestampTzGetDatum(slot.next_expiry)};
        bool const isnull[] = {false, !slot.has_resets_at, false, false, slot.unlimited, !slot.has_next_expiry};
        rewrite_row(rel, layout, row.row, kSlotFirstColumn, 6, values, isnull);
        table_close(rel, NoLock);
        return true;
    });
    if (!direct)
        write_slot_sql(row); /* the executor checks what was added to the table */
}

/* Add one slot to a reply's totals. */
void add_slot_totals(SlotTotals &totals, const Slot &slot, TimestampTz now)
{
    bool overflow = false;
    /*
     * A slot's used counts only in the newest window a current slot has: one
     * whose window ended counts none, and a transaction that started just
     * before a rollover may see slots already rolled over next to slots not yet.
     */
    if (slot_current(slot, now)) {
        if (!totals.has_window || slot.window_start > totals.window_start) {
            totals.has_window = true;
            totals.window_start = slot.window_start;
            totals.used = 0;
        }
        if (slot.window_start == totals.window_start && __builtin_add_overflow(totals.used, slot.used, &totals.used))
            overflow = true;
    }
    if (__builtin_add_overflow(totals.held, slot.held, &totals.held))
        overflow = true;
    if (slot.has_next_expiry && (!totals.has_next_expiry || slot.next_expiry < totals.next_expiry)) {
        totals.has_next_expiry = true;
        totals.next_expiry = slot.next_expiry;
    }
    if (overflow)
        throw Error(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "credit total out of range");
}

int32 scan_slots(AccountKey key, Snapshot snapshot, Slot *out, int32 capacity)
{
    return bridge::guarded_value([&] {
        TableLayout layout;
        Relation rel = open_table(kSlots, AccessShareLock, layout);
        int32 count = -1;
        if (layout.direct) {
            count = 0;
            Relation index = index_open(layout.primary_key, AccessShareLock);
            TupleTableSlot *tuple = table_slot_create(rel, nullptr);
            ScanKeyData keys[kMaxKeyColumns];
            Datum const values[2] = {key.team, key.resource};
            IndexScanDesc scan = begin_key_scan(rel, index, kSlots, layout, values, 2, snapshot, keys);
            while (count >= 0 && index_getnext_slot(scan, ForwardScanDirection, tuple)) {
                if (count < capacity)
                    out[count++] = slot_in(layout, tuple);
                else
                    count = -1; /* more than the caller has room for */
            }
            index_endscan(scan);
            ExecDropSingleTupleTableSlot(tuple);
            index_close(index, NoLock);
        }
        table_close(rel, NoLock);
        return count;
    });
}

SlotTotals slot_totals(AccountKey key, TimestampTz now, Snapshot snapshot, Account &account)
{
    SlotTotals totals;
    /* The account row under the same snapshot as its slots: one consistent state. */
    totals.has_account = fetch_account(key, account, snapshot);
    static Slot found[kMaxSlots];
    int32 const count = scan_slots(key, snapshot, found, kMaxSlots);
    if (count >= 0) {
        for (int32 i = 0; i < count; i++)
            add_slot_totals(totals, found[i], now);
        return totals;
    }
    for (Slot const &slot : read_slots(key, snapshot))
        add_slot_totals(totals, slot, now);
    return totals;
}

} // namespace quota::storage
