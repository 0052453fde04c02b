/*
 * store.hpp — storage access: the tables quota.accounts and quota.holds.
 *
 * Every statement is prepared once per backend (SPI_prepare +
 * SPI_keepplan), schema-qualified down to its operators and casts, and run
 * through bridge::guarded(), so a PostgreSQL error arrives here as
 * quota::PgError.  The account row and the slot rows are read, locked and
 * written directly while their tables are as installed (table.hpp), and
 * through these statements otherwise.
 *
 * Lock order, which keeps the extension's calls free of deadlocks:
 *   tables (accounts, slots, holds; RowExclusiveLock, taken by a writing
 *   call's connect() before any index)  ->  account row  ->  its slot
 *   rows, in slot order  ->  hold rows.
 * A call on an account without slots locks its account row, then holds.
 * A call on a slotted account either locks one slot row (then holds), or,
 * when that slot cannot serve it, first gives that slot's lock back (a
 * it never locked: it locks exactly the version it judged, see escrow.hpp)
 * and then takes the account row and every slot in order.  Within one call
 * nobody waits for a row while holding a row later in the order.
 * The slot rows are in slots.cpp.
 */
#pragma once

#include "budget/account.hpp"

#include <exception>
#include <string>
#include <vector>

namespace quota::storage {

/* An account's key as text Datums (team, resource). */
struct AccountKey {
    Datum team;
    Datum resource;
};

enum class HoldState { Open, Committed, Released, Expired };

struct Hold {
    int64 id = 0;
    AccountKey key{};
    HoldState state = HoldState::Open;
    int64 amount = 0;
    bool has_slot = false; /* false: the account row holds its credits */
    int32 slot = 0;
    bool has_expires_at = false;
    TimestampTz expires_at = 0;
    /*
     * A hold made through parents (1.2): the reservation it belongs to —
     * its own id on the child's hold, the child's hold's id on each
     * ancestor's; 0 for a hold on one account.
     */
    int64 origin = 0;
};

struct ExpiredHolds {
    int64 amount = 0;
    int64 count = 0;
    bool has_next_expiry = false;
    TimestampTz next_expiry = 0;
};

/*
 * Every call begins with begin_call(): Intent::Write first locks every
 * table the call may write, in the extension's order, before any of their
 * indexes; the direct path's verdicts on the tables (table.hpp) are then
 * fixed for the rest of the call.
 */
enum class Intent { Read, Write };
void begin_call(Intent intent);

/* The SPI connection a call works in (nested ones are fine); finish() it before building the result. */
void connect();
void finish();

/*
 * SELECT ... FOR UPDATE of one account; false when it does not exist.
 * `seen`: where fetch_account() found it in this call, if it did (saves
 * looking it up again), else nullptr.
 */
bool lock_account(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen = nullptr);

/* The same, but with wait false it never waits: Busy when another transaction holds the row. */
enum class RowLock { Locked, Missing, Busy };
RowLock lock_account(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen, bool wait);

/*
 * Impatience, for a chain call that takes its own account before the
 * ancestors (budget/tree.cpp): while an Impatience(true) is in scope, a
 * row lock the call would wait for — an account row (lock_account() with
 * wait), a slot (lock_seen_slot() with wait), the slots of an account
 * taken whole (lock_all_slots()) — is not waited for: WouldWait is thrown
 * instead, with nothing of that account locked, and the caller rolls back
 * the subtransaction it runs in.  Calls that already do not wait (Busy)
 * answer as always.
 */
class WouldWait : public std::exception {
public:
    const char *what() const noexcept override { return "a quota row lock is held by another transaction"; }
};
class Impatience {
public:
    explicit Impatience(bool on);
    ~Impatience();
    Impatience(const Impatience &) = delete;
    Impatience &operator=(const Impatience &) = delete;

private:
    bool before_;
};
bool impatient();

/*
 * Whether automatic slotting may change the account's slots: not when
 * set_slots() pinned them (nor in a database not yet at 1.2).  A NULL pin
 * (an account from before 1.2, restored from a dump that lacks the column)
 * means pinned when it has slots, as every slotted account was then.  The
 * caller holds the account row.
 */
bool slots_automatic(AccountKey key);

/* Pin the account's slot count (set_slots), or give it back to automatic slotting. */
void pin_slots(AccountKey key, bool pinned);

/*
 * A read with no row lock, under `snapshot` (the active one when nullptr):
 * a direct primary-key lookup (no SQL, no executor) for the reads that must
 * cost next to nothing, SQL when the table is not as installed.  False when
 * the account does not exist.
 */
bool fetch_account(AccountKey key, Account &account, Snapshot snapshot = nullptr, ItemPointerData *where = nullptr);

/* The credits of the account's open holds past their expiry at `at` (under `snapshot`, else a fresh one). */
int64 expired_held(AccountKey key, TimestampTz at, Snapshot snapshot = nullptr);

/*
 * A snapshot for several reads of one state; drop it after.  Intent::Write:
 * a fresh one that sees the call's own changes; Intent::Read: the
 * statement's (a read-only call makes no changes of its own to see).
 */
Snapshot take_snapshot(Intent intent);
void drop_snapshot(Snapshot snapshot);

/* INSERT ... ON CONFLICT DO NOTHING; false when the account already existed. */
bool insert_account(AccountKey key, const Account &account);

/* Write back a locked account row. */
void update_account(AccountKey key, const ItemPointerData &row, const Account &account);

/* Mark the account row's own open holds (slot NULL) past `now` expired; the caller holds the account lock. */
ExpiredHolds expire_holds(AccountKey key, TimestampTz now);

bool read_hold(int64 id, Hold &hold);
bool find_hold(AccountKey key, Datum idempotency_key, Hold &hold);
int64 insert_hold(AccountKey key, int64 amount, TimestampTz now, const TimestampTz *expires_at,
                  const Datum *idempotency_key, const int32 *slot);

/*
 * The origin that insert_hold() gives the holds it inserts, for the one
 * spending call of a chain that is running (budget/tree.cpp sets it around
 * each account's step and puts back 0 after): 0 none, else the id of the
 * child's hold (the reservation), which the child's own hold is inserted
 * with (`own_id`, taken from next_hold_id() before the chain's first step).
 */
void set_hold_origin(int64 origin, int64 own_id = 0);
int64 next_hold_id();
void settle_hold(AccountKey key, int64 id, HoldState state, TimestampTz now, const int64 *committed);
/*
 * Lock the hold's row if no other transaction holds it; false when one
 * does (or it is gone).  A settled hold is only ever held by
 * purge_holds() once its account (or slot) is locked: a late commit of an
 * expired hold asks first, and does not wait for a purge.
 */
bool try_lock_hold(AccountKey key, int64 id);

/*
 * settle_hold() of `seen`, only if the hold is still in the state and slot
 * it was read with; false (nothing done) if it changed meanwhile.  Saves
 * reading it again under the account lock: read it again only then.
 */
bool settle_unchanged_hold(const Hold &seen, HoldState state, TimestampTz now, const int64 *committed);

/* Lock, skipping rows other transactions hold, every account with holds that may have expired. */
std::vector<AccountKey> lock_accounts_with_expired_holds(TimestampTz now);

/* ---- history and alerts (history.cpp; 1.2: nothing happens in a database not yet at 1.2) ---- */

/* One part of a closed window: the account row's (part -1) or one slot's. */
struct ClosedWindow {
    int32 part = -1;
    TimestampTz start = 0;
    TimestampTz end = 0;
    int64 credit_limit = 0;
    bool unlimited = false;
    int64 used = 0;
};

/* The part `part` of the window [start, end) that used `used`, under the account's terms (`terms`). */
inline ClosedWindow closed_window(const Account &terms, int32 part, TimestampTz start, TimestampTz end, int64 used)
{
    ClosedWindow closed;
    closed.part = part;
    closed.start = start;
    closed.end = end;
    closed.credit_limit = terms.credit_limit;
    closed.unlimited = terms.unlimited;
    closed.used = used;
    return closed;
}

/* Add a part of a closed window to quota.history; the caller holds that part's row. */
void record_history(AccountKey key, const ClosedWindow &closed);

/* The most thresholds read from one row of quota.alert_settings (set_alerts() stores at most 64). */
inline constexpr int kMaxStoredThresholds = 64;

/* The account's own alert thresholds (quota.alert_settings); false when it has none. */
bool read_thresholds(AccountKey key, std::vector<int32> &out);

/* Whether any account has thresholds of its own. */
bool any_thresholds();

/* Store the account's own thresholds (empty: delete them); the caller holds the account. */
void write_thresholds(AccountKey key, const std::vector<int32> &thresholds);

/* quota.alert_settings (InvalidOid before 1.2). */
Oid alert_settings_relid();

/* Whether quota.events exists (1.2). */
bool alerts_installed();

/* An alert, as quota.events stores it. */
struct Event {
    TimestampTz window_start = 0;
    bool has_resets_at = false;
    TimestampTz resets_at = 0;
    int32 threshold = 0;
    int64 used = 0;
    int64 held = 0;
    int64 credit_limit = 0;
    TimestampTz created_at = 0;
};

/* Insert the event unless its (team, resource, window_start, threshold) has one, and notify; true when raised. */
bool insert_event(AccountKey key, const Event &event, bool notify);

/* ---- parents and concurrency caps (links.cpp; 1.2) ---- */

/* One row of quota.links: the account's parent (same resource) and cap. */
struct Links {
    bool has_parent = false;
    size_t parent_length = 0;
    char parent[kMaxNameBytes + 1] = {}; /* set_parent() checks names: at most kMaxNameBytes */
    bool has_cap = false;
    int32 cap = 0;

    bool any() const { return has_parent || has_cap; }
};

/* Whether quota.links exists (a database at 1.2). */
bool links_installed();

/* quota.links (InvalidOid before 1.2). */
Oid links_relid();

/* The account's links under the latest snapshot; false when it has no row. */
bool read_links(AccountKey key, Links &out);

/* Whether any account has links. */
bool any_links();

/* Lock quota.links against other changes of the tree (SHARE ROW EXCLUSIVE: readers go on) until the transaction ends. */
void lock_links();

/* Store the account's links (none: delete its row). */
void write_links(AccountKey key, const Links &links);

/*
 * Under the latest snapshot: how many accounts the chain from `parent` up
 * has (parent itself is 1), whether `team` is on it, and how many the
 * longest chain from `team` down has (team itself is 1).
 */
struct TreeShape {
    int32 above = 0;
    bool cycle = false;
    int32 below = 0;
};
TreeShape tree_shape(AccountKey key, Datum parent);

/* Unexpired open holds of the account at `now` (its row and slots), and the earliest expiry among them. */
struct OpenHolds {
    int64 count = 0;
    bool has_earliest = false;
    TimestampTz earliest = 0;
};
OpenHolds open_holds(AccountKey key, TimestampTz now);

/* The ancestors' holds of reservation `origin`, in the order they were made (root first). */
std::vector<int64> ancestor_holds(int64 origin);

/* ---- slots (slots.cpp) ---- */

/* A slot row and where it is. */
struct SlotRow {
    Slot slot;
    ItemPointerData row{};
};

/* Every slot of the account under `snapshot`, with SQL (when quota.slots is not as installed). */
std::vector<Slot> read_slots(AccountKey key, Snapshot snapshot);

/* read_slot() and write_slot() with SQL, for when quota.slots is not as installed. */
bool read_slot_sql(AccountKey key, int32 number, Snapshot snapshot, SlotRow &out);
void write_slot_sql(const SlotRow &row);

/* Lock every slot of the account, in slot order (the caller holds the account row); WouldWait when impatient() and one is busy. */
std::vector<SlotRow> lock_all_slots(AccountKey key);

void update_slot(const SlotRow &row);
void insert_slot(AccountKey key, const Slot &slot);
/* Delete slots `from` and up, moving their open holds to the account row. */
void drop_slots_from(AccountKey key, int32 from);

/* Delete slot rows `from` and up that the account does not count (left by a hand-made DELETE of the account). */
void delete_slot_rows_from(AccountKey key, int32 from);

/* ---- the fast path's direct access to slots (direct_slots.cpp) ---- */

/*
 * True while quota.slots is as the extension made it (judged with the table
 * locked); otherwise read_slot() and write_slot() use SQL (the executor
 * checks what was added to the table), and automatic slotting makes no new
 * slots.
 */
bool slots_direct();

/* read_slot() under a fresh snapshot (the newest committed version, and this transaction's own). */
bool peek_slot(AccountKey key, int32 number, SlotRow &out);

/*
 * Slot `number` under `snapshot` (from take_snapshot()), for a reader
 * (Intent::Read: the table locked as a reader, which a standby allows);
 * false when none.  With SQL when quota.slots is not as installed.
 */
bool read_slot(AccountKey key, int32 number, Snapshot snapshot, storage::Intent intent, SlotRow &out);

/*
 * Every slot of the account under `snapshot`, at most `capacity` of them,
 * into `out`; their number, or -1 when quota.slots is not as installed (or
 * the account has more than `capacity`: then read them another way).
 */
int32 scan_slots(AccountKey key, Snapshot snapshot, Slot *out, int32 capacity);

enum class SlotLock { Taken, Busy, Changed };

/*
 * Lock exactly the version `row` was read at, if it is still the newest:
 * Taken; Busy when another transaction holds it (only when !wait); Changed
 * when a newer version exists (read again).  Never locks a version the
 * caller has not seen, so a caller that gives up holds nothing.  `holder`,
 * when Busy: the transaction that holds it, if known (else invalid).
 */
SlotLock lock_seen_slot(const SlotRow &row, bool wait, TransactionId *holder = nullptr);

/*
 * Write back a slot locked by lock_seen_slot() (with SQL when quota.slots is
 * not as installed).  Locking a version needs no layout: it is the same either way.
 */
void write_slot(const SlotRow &row);

/*
 * A slotted account under `snapshot` (from take_snapshot()): its row, read into
 * `account`, and what its slots add — used in their newest current window,
 * held, the earliest expiry.  One snapshot for both, so a reply never adds
 * an older account row to newer slots.
 */
struct SlotTotals {
    bool has_account = false;     /* the account row was found (and read into the caller's Account) */
    bool has_window = false;      /* some slot's window is current */
    TimestampTz window_start = 0; /* the newest such window; `used` is that window's */
    int64 used = 0;
    int64 held = 0;
    bool has_next_expiry = false;
    TimestampTz next_expiry = 0;
};
SlotTotals slot_totals(AccountKey key, TimestampTz now, Snapshot snapshot, Account &account);

/* Add one slot to a reply's totals (its used only if its window is the newest current one). */
void add_slot_totals(SlotTotals &totals, const Slot &slot, TimestampTz now);

/* Mark one slot's open holds past `now` expired; the caller holds the slot. */
ExpiredHolds expire_slot_holds(AccountKey key, int32 slot, TimestampTz now);

/* Lock, skipping rows other transactions hold, every slot with holds that may have expired. */
struct LockedSlot {
    AccountKey key;
    SlotRow row;
};
std::vector<LockedSlot> lock_slots_with_expired_holds(TimestampTz now);

/* Decode a quota.accounts row value (the view's per-row state); without_slots: a database at 1.0. */
Account account_from_row(HeapTupleHeader row, bool with_slots);

/* False in a database whose quota is still at 1.0 (no slots yet: ALTER EXTENSION quota UPDATE adds them). */
bool schema_has_slots();

/*
 * quota.distribute() distributed quota's tables over a Citus cluster: every
 * statement names the team it touches (table.hpp, citus_mode()).
 */
bool distributed();

/* The role that owns the extension's tables (cached per backend). */
Oid tables_owner();

/* An account key as one string (team, NUL, resource, NUL), for per-backend caches keyed by account. */
std::string cache_key(AccountKey key);

/* An account key's names, for messages. */
const char *team_name(AccountKey key);
const char *resource_name(AccountKey key);

} // namespace quota::storage
