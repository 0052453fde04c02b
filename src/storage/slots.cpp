/*
 * slots.cpp — the SQL for quota.slots, the sub-budgets of slotted accounts
 * (see budget/account.hpp, Slot, and ledger.cpp for how calls use them).
 *
 * These statements serve the ledger's path (every slot locked in order,
 * after the account row) and the sweeper; the fast path of a single slot
 * reads and locks slot rows directly (direct_slots.cpp).
 */
#include "storage/store.hpp"

#include "bridge/guard.hpp"
#include "storage/sql.hpp"

namespace quota::storage {

namespace {

/* Cast to the types they are decoded as (see ACCOUNT_COLUMNS in store.cpp). */
#define SLOT_COLUMNS                                                                                              \
    "CAST(s.slot AS pg_catalog.int4), CAST(s.window_start AS pg_catalog.timestamptz),"                            \
    " CAST(s.resets_at AS pg_catalog.timestamptz), CAST(s.used AS pg_catalog.int8), CAST(s.held AS pg_catalog.int8)," \
    " CAST(s.share AS pg_catalog.int8), CAST(s.next_expiry AS pg_catalog.timestamptz)"
#define SLOT_TYPES INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID
#define SLOTS_OF(team, resource) "s.team" EQ team " AND s.resource" EQ resource

Statement lock_all_slots_sql = {
    "SELECT s.ctid, " SLOT_COLUMNS " FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2") " ORDER BY s.slot FOR UPDATE",
    nullptr, 2, {TEXTOID, TEXTOID}};

/* Impatient (store.hpp): the free ones, and how many there are in all (the account row held: no slot comes or goes). */
Statement lock_free_slots_sql = {
    "SELECT s.ctid, " SLOT_COLUMNS " FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2")
    " ORDER BY s.slot FOR UPDATE SKIP LOCKED",
    nullptr, 2, {TEXTOID, TEXTOID}};

Statement count_slots_sql = {
    "SELECT pg_catalog.count(*) FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2"), nullptr, 2, {TEXTOID, TEXTOID}};

Statement one_slot_sql = {
    "SELECT s.ctid, " SLOT_COLUMNS " FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2") " AND s.slot" EQ "$3",
    nullptr, 3, {TEXTOID, TEXTOID, INT4OID}};

Statement read_slots_sql = {
    "SELECT s.ctid, " SLOT_COLUMNS " FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2"), nullptr, 2, {TEXTOID, TEXTOID}};

Statement update_slot_sql = {
    "UPDATE ONLY quota.slots SET window_start = $3, resets_at = $4, used = $5, held = $6, share = $7, next_expiry = $8"
    " WHERE ctid" EQ "$1",
    nullptr, 8, {TIDOID, SLOT_TYPES}};

Statement insert_slot_sql = {
    "INSERT INTO quota.slots (team, resource, slot, window_start, resets_at, used, held, share, next_expiry)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    nullptr, 9, {TEXTOID, TEXTOID, SLOT_TYPES}};

Statement drop_slots_sql = {
    "WITH moved AS ("
    " UPDATE ONLY quota.holds h SET slot = NULL"
    "  WHERE h.team" EQ "$1 AND h.resource" EQ "$2 AND h.state" EQ "'open' AND h.slot" GE "$3 RETURNING h.id)"
    " DELETE FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2") " AND s.slot" GE "$3",
    nullptr, 3, {TEXTOID, TEXTOID, INT4OID}};

Statement delete_slot_rows_sql = {
    "DELETE FROM ONLY quota.slots s WHERE " SLOTS_OF("$1", "$2") " AND s.slot" GE "$3", nullptr, 3,
    {TEXTOID, TEXTOID, INT4OID}};

#define OPEN_HOLDS_OF_SLOT "h.team" EQ "$1 AND h.resource" EQ "$2 AND h.state" EQ "'open' AND h.slot" EQ "$4"

Statement expire_slot_holds_sql = {
    "WITH gone AS ("
    " UPDATE ONLY quota.holds h SET state = 'expired', settled_at = $3"
    "  WHERE " OPEN_HOLDS_OF_SLOT " AND h.expires_at" LE "$3"
    "  RETURNING h.amount)"
    " SELECT CAST(COALESCE(pg_catalog.sum(g.amount), 0) AS pg_catalog.int8), pg_catalog.count(*),"
    "  (SELECT pg_catalog.min(h.expires_at) FROM ONLY quota.holds h"
    "    WHERE " OPEN_HOLDS_OF_SLOT " AND h.expires_at" GT "$3)"
    " FROM gone g",
    nullptr, 4, {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT4OID}};

Statement lock_expired_slots_sql = {
    "SELECT s.ctid, " SLOT_COLUMNS ", CAST(s.team AS pg_catalog.text), CAST(s.resource AS pg_catalog.text)"
    " FROM ONLY quota.slots s WHERE s.next_expiry" LE "$1"
    " FOR UPDATE SKIP LOCKED",
    nullptr, 1, {TIMESTAMPTZOID}};

/* Result row `i` of a "ctid, SLOT_COLUMNS" query. */
SlotRow slot_row(uint64 i)
{
    SlotRow out;
    bool isnull = false;
    out.row = *reinterpret_cast<ItemPointer>(DatumGetPointer(column_of(i, 1, &isnull)));
    Slot &slot = out.slot;
    slot.number = DatumGetInt32(column_of(i, 2, &isnull));
    slot.window_start = DatumGetTimestampTz(column_of(i, 3, &isnull));
    Datum const resets_at = column_of(i, 4, &isnull);
    slot.has_resets_at = !isnull;
    slot.resets_at = isnull ? 0 : DatumGetTimestampTz(resets_at);
    slot.used = DatumGetInt64(column_of(i, 5, &isnull));
    slot.held = DatumGetInt64(column_of(i, 6, &isnull));
    Datum const share = column_of(i, 7, &isnull);
    slot.unlimited = isnull;
    slot.share = isnull ? 0 : DatumGetInt64(share);
    Datum const next_expiry = column_of(i, 8, &isnull);
    slot.has_next_expiry = !isnull;
    slot.next_expiry = isnull ? 0 : DatumGetTimestampTz(next_expiry);
    return out;
}

/* A slot's columns as parameters, from values[0] (SLOT_TYPES order). */
void encode_slot(const Slot &slot, Datum *values, char *nulls)
{
    values[0] = Int32GetDatum(slot.number);
    values[1] = TimestampTzGetDatum(slot.window_start);
    values[2] = TimestampTzGetDatum(slot.resets_at);
    nulls[2] = slot.has_resets_at ? ' ' : 'n';
    values[3] = Int64GetDatum(slot.used);
    values[4] = Int64GetDatum(slot.held);
    values[5] = Int64GetDatum(slot.share);
    nulls[5] = slot.unlimited ? 'n' : ' ';
    values[6] = TimestampTzGetDatum(slot.next_expiry);
    nulls[6] = slot.has_next_expiry ? ' ' : 'n';
}

} // namespace

std::vector<SlotRow> lock_all_slots(AccountKey key)
{
    Datum values[2] = {key.team, key.resource};
    bool const skip = impatient();
    execute(skip ? lock_free_slots_sql : lock_all_slots_sql, values, nullptr, false);
    std::vector<SlotRow> rows;
    rows.reserve(SPI_processed);
    for (uint64 i = 0; i < SPI_processed; i++)
        rows.push_back(slot_row(i));
    if (skip) {
        execute(count_slots_sql, values, nullptr, false);
        bool isnull = false;
        if (static_cast<uint64>(DatumGetInt64(column(1, &isnull))) != rows.size())
            throw WouldWait(); /* one is busy: the subtransaction's rollback gives back those taken */
    }
    return rows;
}

std::vector<Slot> read_slots(AccountKey key, Snapshot snapshot)
{
    Datum values[2] = {key.team, key.resource};
    connect(); /* an SPI connection of its own: callers may or may not have one */
    execute(read_slots_sql, values, nullptr, true, snapshot);
    std::vector<Slot> slots;
    slots.reserve(SPI_processed);
    for (uint64 i = 0; i < SPI_processed; i++)
        slots.push_back(slot_row(i).slot);
    finish();
    return slots;
}

bool read_slot_sql(AccountKey key, int32 number, Snapshot snapshot, SlotRow &out)
{
    Datum values[3] = {key.team, key.resource, Int32GetDatum(number)};
    connect(); /* as read_slots() */
    execute(one_slot_sql, values, nullptr, true, snapshot);
    bool const found = SPI_processed > 0;
    if (found)
        out = slot_row(0);
    finish();
    return found;
}

void write_slot_sql(const SlotRow &row)
{
    connect();
    update_slot(row);
    finish();
}

void update_slot(const SlotRow &row)
{
    ItemPointerData target = row.row;
    Datum values[8] = {PointerGetDatum(&target)};
    char nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    encode_slot(row.slot, values + 1, nulls + 1);
    execute(update_slot_sql, values, nulls, false);
    if (SPI_processed != 1)
        throw Error(ERRCODE_INTERNAL_ERROR, "quota slot row vanished while locked");
}

void insert_slot(AccountKey key, const Slot &slot)
{
    Datum values[9] = {key.team, key.resource};
    char nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    encode_slot(slot, values + 2, nulls + 2);
    execute(insert_slot_sql, values, nulls, false);
}

void drop_slots_from(AccountKey key, int32 from)
{
    Datum values[3] = {key.team, key.resource, Int32GetDatum(from)};
    execute(drop_slots_sql, values, nullptr, false);
}

void delete_slot_rows_from(AccountKey key, int32 from)
{
    Datum values[3] = {key.team, key.resource, Int32GetDatum(from)};
    execute(delete_slot_rows_sql, values, nullptr, false);
}

ExpiredHolds expire_slot_holds(AccountKey key, int32 slot, TimestampTz now)
{
    Datum values[4] = {key.team, key.resource, TimestampTzGetDatum(now), Int32GetDatum(slot)};
    execute(expire_slot_holds_sql, values, nullptr, false);
    return expired_holds_result();
}

std::vector<LockedSlot> lock_slots_with_expired_holds(TimestampTz now)
{
    std::vector<LockedSlot> found;
    /* On Citus no account has slots (set_slots() refuses, automatic slotting needs the direct path). */
    if (!schema_has_slots() || distributed())
        return found;
    Datum values[1] = {TimestampTzGetDatum(now)};
    execute(lock_expired_slots_sql, values, nullptr, false);
    found.reserve(SPI_processed);
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull = false;
        found.push_back(LockedSlot{AccountKey{column_of(i, 9, &isnull), column_of(i, 10, &isnull)}, slot_row(i)});
    }
    return found;
}

} // namespace quota::storage
