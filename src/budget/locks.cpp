/*
 * locks.cpp — what the current transaction holds of each account it called
 * on (see locks.hpp for the rule this serves).
 *
 * A small fixed table per backend, reset when a new top-level transaction
 * starts (keyed by its local transaction id, valid from its first
 * statement).  Accounts are identified by a 64-bit hash of their key; when
 * the table is full, every account not in it counts as holding a slot,
 * which is the cautious answer (such a call never waits on a slotted
 * account; it may be denied instead, see ledger.cpp).
 *
 * A subtransaction that rolls back (ROLLBACK TO SAVEPOINT, a PL/pgSQL
 * exception block) gives back the row locks it took, so after one nothing
 * here is known for sure: every account the transaction touched then
 * counts as "holds a slot, which one unknown" — it may still hold some, and
 * no longer holds the whole.
 */
#include "budget/locks.hpp"

#include "bridge/guard.hpp"

#include <algorithm>

namespace quota::locks {

namespace {

constexpr int kEntries = 256; /* accounts one transaction calls on before the cautious answer applies */

struct Entry {
    uint64 account;
    Held held;
    int32 slot;
};

struct Table {
    LocalTransactionId transaction = InvalidLocalTransactionId;
    int count = 0;
    bool overflowed = false;
    Entry entries[kEntries];
};

Table table;
bool watching = false;

void subtransaction_event(SubXactEvent event, SubTransactionId, SubTransactionId, void *)
{
    if (event != SUBXACT_EVENT_ABORT_SUB || table.transaction != MyProc->lxid)
        return;
    for (int i = 0; i < table.count; i++)
        table.entries[i] = Entry{table.entries[i].account, Held::Slot, -1};
}

uint64 text_hash(Datum value, uint64 seed)
{
    struct varlena *flat = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(value)));
    return DatumGetUInt64(hash_bytes_extended(reinterpret_cast<const unsigned char *>(VARDATA_ANY(flat)),
                                              static_cast<int>(VARSIZE_ANY_EXHDR(flat)), seed));
}

uint64 account_of(storage::AccountKey key)
{
    return bridge::guarded_value([&] { return hash_combine64(text_hash(key.team, 0x71756f7461), text_hash(key.resource, 1)); });
}

/* The table of the current transaction (emptied when a new one started). */
Table &current()
{
    LocalTransactionId const now = MyProc->lxid;
    if (table.transaction != now) {
        table.transaction = now;
        table.count = 0;
        table.overflowed = false;
    }
    return table;
}

Entry *find(Table &t, uint64 account)
{
    for (int i = 0; i < t.count; i++)
        if (t.entries[i].account == account)
            return &t.entries[i];
    return nullptr;
}

void note(storage::AccountKey key, Held held, int32 slot)
{
    if (!watching) {
        bridge::guarded([] { RegisterSubXactCallback(subtransaction_event, nullptr); });
        watching = true;
    }
    Table &t = current();
    uint64 const account = account_of(key);
    Entry *entry = find(t, account);
    if (entry == nullptr) {
        if (t.count == kEntries) {
            t.overflowed = true;
            return;
        }
        entry = &t.entries[t.count++];
        *entry = Entry{account, Held::Nothing, 0};
    }
    if (entry->held == Held::Whole)
        return;
    entry->held = held;
    entry->slot = slot;
}

} // namespace

namespace {

constexpr int kCallAccounts = 8; /* a chain has at most 4; more only counts as beyond, cautiously */
uint64 call_accounts[kCallAccounts];
int call_count = 0;

} // namespace

void start_call()
{
    call_count = 0;
}

void in_call(uint64 account)
{
    if (call_count < kCallAccounts)
        call_accounts[call_count++] = account;
}

bool holds_beyond_call(storage::AccountKey key)
{
    Table const &t = current();
    if (t.overflowed)
        return true;
    uint64 const self = account_of(key);
    for (int i = 0; i < t.count; i++) {
        Entry const &entry = t.entries[i];
        if (entry.held == Held::Nothing || entry.account == self)
            continue;
        bool ours = false;
        for (int j = 0; j < call_count && !ours; j++)
            ours = entry.account == call_accounts[j];
        if (!ours)
            return true;
    }
    return false;
}

bool holds_any()
{
    Table const &t = current();
    if (t.overflowed)
        return true;
    return std::any_of(t.entries, t.entries + t.count, [](const Entry &entry) { return entry.held != Held::Nothing; });
}

struct Saved {
    Table table; /* entries beyond table.count are not copied */
};

void SavedDeleter::operator()(Saved *saved) const
{
    delete saved;
}

SavedTable save()
{
    Table const &t = current();
    SavedTable saved(new Saved); /* deliberate: owned by the caller's frame for one call */
    saved->table.transaction = t.transaction;
    saved->table.count = t.count;
    saved->table.overflowed = t.overflowed;
    std::copy(t.entries, t.entries + t.count, saved->table.entries);
    return saved;
}

void restore(const SavedTable &saved)
{
    if (!saved || saved->table.transaction != MyProc->lxid)
        return;
    table.transaction = saved->table.transaction;
    table.count = saved->table.count;
    table.overflowed = saved->table.overflowed;
    std::copy(saved->table.entries, saved->table.entries + saved->table.count, table.entries);
}

uint64 account_id(storage::AccountKey key)
{
    return account_of(key);
}

Held held(storage::AccountKey key)
{
    Table &t = current();
    Entry const *entry = find(t, account_of(key));
    if (entry != nullptr)
        return entry->held;
    return t.overflowed ? Held::Slot : Held::Nothing;
}

int32 held_slot(storage::AccountKey key)
{
    Table &t = current();
    Entry const *entry = find(t, account_of(key));
    return entry != nullptr && entry->held == Held::Slot ? entry->slot : -1;
}

void took_slot(storage::AccountKey key, int32 slot)
{
    note(key, Held::Slot, slot);
}

void took_whole(storage::AccountKey key)
{
    note(key, Held::Whole, 0);
}

} // namespace quota::locks
