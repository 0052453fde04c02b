'use strict';
// Run the chat backend: PG* environment variables (or DATABASE_URL) name the
// database, PORT the port (default 3000).  The "out of credits" notifier
// runs beside it (its messages go to the log here: plug a real mailer in).
const { Pool } = require('pg');
const { Credits } = require('./credits');
const { createFakeModel } = require('./model');
const { createChatServer } = require('./server');
const { OutOfCreditsNotifier } = require('./notifier');

const config = process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {};
const pool = new Pool(config);
const log = (line) => console.error(line);
const server = createChatServer({ credits: new Credits(pool), model: createFakeModel(), log });
const notifier = new OutOfCreditsNotifier({
  clientConfig: config,
  pool,
  mailer: { send: async (m) => log(`mail to ${m.to}: ${m.text}`) },
  log,
});
const port = Number(process.env.PORT ?? 3000);
notifier.start().then(
  () => server.listen(port, () => console.error(`chat backend listening on http://localhost:${port}/chat`)),
  (err) => {
    console.error(`could not start the notifier: ${err.message}`);
    process.exit(1);
  },
);
