'use strict';
// Run the chat backend: PG* environment variables (or DATABASE_URL) name the
// database, PORT the port (default 3000).
const { Pool } = require('pg');
const { Credits } = require('./credits');
const { createFakeModel } = require('./model');
const { createChatServer } = require('./server');

const pool = new Pool(process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {});
const server = createChatServer({
  credits: new Credits(pool),
  model: createFakeModel(),
  log: (line) => console.error(line),
});
const port = Number(process.env.PORT ?? 3000);
server.listen(port, () => console.error(`chat backend listening on http://localhost:${port}/chat`));
