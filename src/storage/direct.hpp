/*
 * direct.hpp — direct table access to quota.accounts (see direct.cpp), and
 * the row helpers direct_slots.cpp shares.  Internal to src/storage/;
 * store.hpp declares what the rest of the extension calls.
 */
#pragma once

#include "storage/store.hpp"

namespace quota::storage {

/*
 * SELECT ... FOR UPDATE of one account, done directly; `found` is false when
 * it does not exist.  Returns false, doing nothing, when quota.accounts is no
 * longer as the extension made it: then the SQL statement must run instead.
 */
bool lock_account_direct(AccountKey key, Account &account, ItemPointerData &row, bool &found);

/* Column numbers of `names` in the relation (0 when missing); call inside guarded(). */
void column_numbers(Relation rel, const char *const *names, int count, AttrNumber *attnums);

/*
 * Rewrite the row at `row`, locked by this transaction: columns[i] := values[i].
 * simple_heap_update(), plus the primary-key entry when the update is not
 * HOT.  Call inside guarded().
 */
void rewrite_row(Relation rel, Oid primary_key, const ItemPointerData &row, int count, const int *columns,
                 const Datum *values, const bool *isnull);

/* The account under `snapshot`, by primary key; call inside guarded(). */
bool fetch_account_in(AccountKey key, Snapshot snapshot, Account &account);

/* Write back a row locked by lock_account_direct(); false (nothing done) as above. */
bool update_account_direct(const ItemPointerData &row, const Account &account);

} // namespace quota::storage
