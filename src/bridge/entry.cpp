#include "bridge/entry.hpp"

#include "bridge/error.hpp"
#include "storage/store.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>

namespace quota {

std::string format(const char *fmt, ...)
{
    char buffer[512];
    va_list args;
    va_start(args, fmt);
    int const length = std::vsnprintf(buffer, sizeof(buffer), fmt, args);
    va_end(args);
    if (length < 0)
        return std::string(fmt);
    if (static_cast<size_t>(length) < sizeof(buffer))
        return std::string(buffer, static_cast<size_t>(length));

    std::string result(static_cast<size_t>(length) + 1, '\0');
    va_start(args, fmt);
    std::vsnprintf(result.data(), result.size(), fmt, args);
    va_end(args);
    result.resize(static_cast<size_t>(length));
    return result;
}

namespace bridge {

namespace {

/*
 * The error being reported, copied out of the exception before the catch
 * block is left.  Fixed buffers: copying must not allocate, since the
 * allocation could itself fail inside the catch block.
 */
struct PendingError {
    int sqlstate;
    char message[4096];
    char detail[4096];
    char hint[4096];
};

PendingError pending;

/* Copy `source` into `target`, cut if it must be on a character boundary (never inside a multibyte sequence). */
void copy_text(char *target, size_t size, const char *source)
{
    size_t length = std::strlen(source);
    if (length >= size)
        length = static_cast<size_t>(pg_mbcliplen(source, static_cast<int>(length), static_cast<int>(size - 1)));
    std::memcpy(target, source, length);
    target[length] = '\0';
}

/* True when the client's encoding can show `text` (called from a C frame: PG_TRY around a pure conversion). */
bool client_can_show(const char *text)
{
    if (pg_is_ascii(text) || pg_get_client_encoding() == GetDatabaseEncoding())
        return true;
    MemoryContext const context = CurrentMemoryContext;
    volatile bool shown = true;
    PG_TRY();
    {
        char *converted = pg_server_to_client(text, static_cast<int>(std::strlen(text)));
        if (converted != text)
            pfree(converted);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(context);
        FlushErrorState();
        shown = false;
    }
    PG_END_TRY();
    return shown;
}

/* Replace every non-ASCII character with an escape (\00fc, \+01f600, or \xNN outside UTF-8), in place. */
void escape_non_ascii(char *text, size_t size)
{
    char escaped[sizeof(PendingError::message)];
    size_t out = 0;
    bool const utf8 = GetDatabaseEncoding() == PG_UTF8;
    for (const char *p = text; *p != '\0' && out + 12 < sizeof(escaped);) {
        auto const byte = static_cast<unsigned char>(*p);
        if (byte < 0x80) {
            escaped[out++] = *p++;
            continue;
        }
        int const length = pg_mblen(p);
        pg_wchar const code = utf8 ? utf8_to_unicode(reinterpret_cast<const unsigned char *>(p)) : 0;
        if (utf8) /* as in U&'...' strings: \XXXX, or \+XXXXXX beyond the Basic Multilingual Plane */
            out += static_cast<size_t>(std::snprintf(escaped + out, sizeof(escaped) - out,
                                                     code > 0xFFFF ? "\\+%06x" : "\\%04x", code));
        else
            for (int i = 0; i < length; i++)
                out += static_cast<size_t>(std::snprintf(escaped + out, sizeof(escaped) - out, "\\x%02x",
                                                         static_cast<unsigned char>(p[i])));
        p += length;
    }
    escaped[out] = '\0';
    copy_text(text, size, escaped);
}

void make_showable(char *text, size_t size)
{
    if (!client_can_show(text))
        escape_non_ascii(text, size);
}

} // namespace

Datum call(FunctionCallInfo fcinfo, Body body, Access access, Effect effect, const char *name)
{
    /* Before anything runs: a write in a read-only transaction or during recovery is refused (25006). */
    if (effect == Effect::Writes) {
        PreventCommandIfReadOnly(name);
        PreventCommandDuringRecovery(name);
    }

    Oid saved_user = InvalidOid;
    int saved_context = 0;
    bool switched = false;
    ErrorData *pg_error = nullptr;
    bool failed = false;
    Datum result = (Datum) 0;

    try {
        /* A quota call made inside another's impatient step (from a trigger) waits as calls do (store.hpp). */
        storage::Impatience const patient(false);
        if (access == Access::Owner) {
            Oid const owner = storage::tables_owner();
            GetUserIdAndSecContext(&saved_user, &saved_context);
            SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
            switched = true;
        }
        result = body(fcinfo);
    } catch (const PgError &e) {
        pg_error = e.data();
    } catch (const Error &e) {
        failed = true;
        pending.sqlstate = e.sqlstate();
        copy_text(pending.message, sizeof(pending.message), e.message().c_str());
        copy_text(pending.detail, sizeof(pending.detail), e.detail().c_str());
        copy_text(pending.hint, sizeof(pending.hint), e.hint().c_str());
    } catch (const std::bad_alloc &) {
        failed = true;
        pending.sqlstate = ERRCODE_OUT_OF_MEMORY;
        copy_text(pending.message, sizeof(pending.message), "out of memory");
        pending.detail[0] = pending.hint[0] = '\0';
    } catch (const std::exception &e) {
        failed = true;
        pending.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(pending.message, sizeof(pending.message), e.what());
        pending.detail[0] = pending.hint[0] = '\0';
    } catch (...) {
        failed = true;
        pending.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(pending.message, sizeof(pending.message), "unexpected C++ exception in quota");
        pending.detail[0] = pending.hint[0] = '\0';
    }

    /* On error the transaction's abort restores the user as well. */
    if (switched)
        SetUserIdAndSecContext(saved_user, saved_context);

    if (pg_error != nullptr)
        ReThrowError(pg_error);
    if (failed) {
        make_showable(pending.message, sizeof(pending.message));
        make_showable(pending.detail, sizeof(pending.detail));
        make_showable(pending.hint, sizeof(pending.hint));
        ereport(ERROR,
                (errcode(pending.sqlstate),
                 errmsg_internal("%s", pending.message),
                 pending.detail[0] != '\0' ? errdetail_internal("%s", pending.detail) : 0,
                 pending.hint[0] != '\0' ? errhint("%s", pending.hint) : 0));
    }
    return result;
}

} // namespace bridge
} // namespace quota
