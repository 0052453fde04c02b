-- Install the extension; later tests share this database.
CREATE EXTENSION quota;
SELECT extname, extversion, extrelocatable, nspname
  FROM pg_extension JOIN pg_namespace n ON n.oid = extnamespace
 WHERE extname = 'quota';
-- Every function, with its arguments and defaults, result type, volatility and parallel safety.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS returns,
       p.provolatile, p.proparallel, p.proisstrict, p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'quota'::regnamespace ORDER BY p.proname, 2;
-- The columns of quota.grant, in order.
SELECT attnum, attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'quota.grant'::regclass AND attnum > 0 ORDER BY attnum;
-- The columns of quota.usage, in order.
SELECT attnum, attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'quota.usage'::regclass AND attnum > 0 ORDER BY attnum;
-- Not relocatable.
CREATE SCHEMA elsewhere;
ALTER EXTENSION quota SET SCHEMA elsewhere;
DROP SCHEMA elsewhere;
