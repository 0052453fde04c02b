'use strict';
// Run the gateway: PG* environment variables (or DATABASE_URL) name the
// database, PORT the port (default 8080), QUOTA_RESOURCE the budget checked.
const { Pool } = require('pg');
const { createGateway, fakeUpstream } = require('./gateway');

const pool = new Pool(process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {});
const gateway = createGateway({
  pool,
  upstream: fakeUpstream,
  resource: process.env.QUOTA_RESOURCE ?? 'credits',
  log: (line) => console.error(line),
});
const port = Number(process.env.PORT ?? 8080);
gateway.listen(port, () => console.error(`gateway listening on http://localhost:${port}/`));
