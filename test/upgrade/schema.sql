-- Everything the extension owns, described from the catalogs, one line per
-- fact: test/upgrade.sh compares this between an updated install and a fresh
-- one (pg_dump cannot: it leaves extension members out).
WITH members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
     WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'quota')
       AND d.deptype = 'e'
)
SELECT fact FROM (
    SELECT 'object ' || pg_catalog.pg_describe_object(classid, objid, 0) AS fact FROM members
    UNION ALL
    SELECT 'function ' || p.oid::pg_catalog.regprocedure || ' ' || pg_catalog.pg_get_functiondef(p.oid)
           || ' acl ' || coalesce(p.proacl::text, 'default')
      FROM members m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'relation ' || c.oid::pg_catalog.regclass || ' kind ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
           || coalesce(' view ' || pg_catalog.pg_get_viewdef(c.oid), '')
      FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
    UNION ALL
    SELECT 'column ' || a.attrelid::pg_catalog.regclass || '.' || a.attname || ' #' || a.attnum || ' '
           || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
      FROM members m
      JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
      FROM members m JOIN pg_catalog.pg_index i ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT 'constraint ' || con.conrelid::pg_catalog.regclass || ' ' || con.conname || ' ' || pg_catalog.pg_get_constraintdef(con.oid)
      FROM members m JOIN pg_catalog.pg_constraint con ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND con.conrelid = m.objid
    UNION ALL
    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
      FROM members m JOIN pg_catalog.pg_trigger t ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND t.tgrelid = m.objid
    UNION ALL
    SELECT 'comment ' || pg_catalog.pg_describe_object(ds.classoid, ds.objoid, ds.objsubid) || ': ' || ds.description
      FROM members m JOIN pg_catalog.pg_description ds ON ds.classoid = m.classid AND ds.objoid = m.objid
    UNION ALL
    SELECT 'dumped ' || cfg::pg_catalog.regclass || ' where ' || coalesce(cond, '')
      FROM pg_catalog.pg_extension e, unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
     WHERE e.extname = 'quota'
    UNION ALL
    SELECT 'schema acl ' || coalesce(n.nspacl::text, 'default') || ' comment ' || coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '')
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'quota'
) facts
ORDER BY fact;
