/*
 * entry.hpp — C++ → PostgreSQL: how every SQL-callable function runs.
 *
 * bridge::call() runs a function body inside try/catch, so no C++
 * exception ever reaches PostgreSQL: quota::Error becomes ereport(ERROR)
 * with its SQLSTATE, quota::PgError is re-thrown as the original error,
 * anything else becomes an internal error.  The ereport happens after the
 * catch block has been left, so no exception object is skipped by the
 * longjmp.
 *
 * Access::Owner runs the body with the privileges of the owner of the
 * extension's tables (the C equivalent of SECURITY DEFINER, without
 * fmgr's per-call overhead).  All SQL the extension runs is
 * schema-qualified, so the caller's search_path does not matter.
 *
 * Messages are cut, where they must be, on a character boundary, and
 * escaped where the client's encoding cannot show them, so every error
 * reaches the client as valid text with the SQLSTATE it was raised with.
 *
 * Body frames may call PostgreSQL directly only while they hold trivially
 * destructible locals (Datums, pointers, plain structs); code that owns
 * C++ objects calls PostgreSQL through bridge::guarded().
 */
#pragma once

#include "pg.hpp"

namespace quota::bridge {

enum class Access { Caller, Owner };

/*
 * Effect::Writes: the function may write the extension's tables.  In a
 * read-only transaction or on a standby it is refused (25006) before its
 * body runs, so it changes nothing; `name` is what the error calls it.
 */
enum class Effect { Reads, Writes };

using Body = Datum (*)(FunctionCallInfo fcinfo);

Datum call(FunctionCallInfo fcinfo, Body body, Access access, Effect effect, const char *name);

} // namespace quota::bridge
