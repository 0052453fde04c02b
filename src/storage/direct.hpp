/*
 * direct.hpp — direct table access to quota.accounts (see direct.cpp).
 * Internal to src/storage/; store.hpp declares the lock-free fetch.
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

/* The account under `snapshot`, by primary key; call inside guarded(). */
bool fetch_account_in(AccountKey key, Snapshot snapshot, Account &account);

/* Write back a row locked by lock_account_direct(); false (nothing done) as above. */
bool update_account_direct(const ItemPointerData &row, const Account &account);

} // namespace quota::storage
