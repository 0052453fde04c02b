/*
 * direct.hpp — direct table access to quota.accounts (see direct.cpp).
 * Internal to src/storage/; store.hpp declares the lock-free fetch.
 */
#pragma once

#include "storage/store.hpp"

namespace quota::storage {

/* True while quota.accounts is as the extension made it, so its rows may be written directly. */
bool direct_writes();

/* SELECT ... FOR UPDATE of one account, done directly; false when it does not exist. */
bool lock_account_direct(AccountKey key, Account &account, ItemPointerData &row);

/* Write back a row locked by lock_account_direct(). */
void update_account_direct(const ItemPointerData &row, const Account &account);

} // namespace quota::storage
