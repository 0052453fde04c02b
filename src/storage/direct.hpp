/*
 * direct.hpp — the direct paths of quota.accounts (direct.cpp); internal to
 * src/storage/.  store.hpp declares what the rest of the extension calls.
 * Each returns false, doing nothing, when the table is not as installed
 * (table.hpp): then the SQL statement must run instead.
 */
#pragma once

#include "storage/store.hpp"

namespace quota::storage {

/*
 * SELECT ... FOR UPDATE [NOWAIT] of one account, done directly: `found` is
 * whether it was locked, does not exist, or (only when !wait) is held by
 * another transaction.  `seen`: where the call's snapshot showed the row
 * (fetch_account), or nullptr.
 */
bool lock_account_direct(AccountKey key, const ItemPointerData *seen, bool wait, Account &account, ItemPointerData &row,
                         RowLock &found);

/* The account under `snapshot`, by primary key, with `mode` on the table; `where` (if given) gets its row. */
bool fetch_account_direct(AccountKey key, Snapshot snapshot, LOCKMODE mode, Account &account, bool &found,
                          ItemPointerData *where);

/* Write back a row locked by lock_account_direct(). */
bool update_account_direct(const ItemPointerData &row, const Account &account);

} // namespace quota::storage
