'use strict';
// A throwaway PostgreSQL cluster of a test's own, which the test may stop
// and start at will: initdb into a fresh temporary directory, a free port,
// the socket in that directory, no TCP.  Run as postgres when the tests run
// as root (PostgreSQL refuses root), as the current user otherwise.  It never
// touches the cluster the rest of the tests use (QUOTA_CLUSTER / PGHOST).
// Removed when the test calls destroy(), and in any case when the process
// exits or is interrupted.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const PG_BIN = process.env.QUOTA_PG_BIN
  ?? (fs.existsSync('/usr/lib/postgresql/15/bin/pg_ctl') ? '/usr/lib/postgresql/15/bin' : '');
const asRoot = process.getuid?.() === 0;
const live = new Set();

function run(program, args) {
  const bin = PG_BIN ? path.join(PG_BIN, program) : program;
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  // From /, so that a checkout postgres cannot enter is not its working directory.
  const result = spawnSync(cmd, argv, { cwd: '/', encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
  if (result.status !== 0) {
    throw new Error(`${program} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout || result.error}`);
  }
  return result.stdout;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

class Cluster {
  static async create() {
    const dir = fs.mkdtempSync('/tmp/quota-gw-failover-'); // in /tmp: postgres must be able to enter it
    const cluster = new Cluster(dir, await freePort());
    live.add(cluster);
    try {
      fs.chmodSync(dir, 0o755);
      if (asRoot) {
        const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout);
        const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout);
        fs.chownSync(dir, uid, gid);
      }
      run('initdb', ['-D', cluster.data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8']);
      cluster.start();
    } catch (err) {
      cluster.destroy();
      throw err;
    }
    return cluster;
  }

  constructor(dir, port) {
    this.dir = dir;
    this.data = path.join(dir, 'data');
    this.port = port;
  }

  // node-postgres settings for this cluster (socket directory and port).
  get connection() {
    return { host: this.dir, port: this.port, database: 'postgres' };
  }

  start() {
    run('pg_ctl', ['-D', this.data, '-l', path.join(this.dir, 'server.log'), '-w', '-t', '30',
      '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses='' -c max_connections=40`, 'start']);
  }

  stop(mode = 'fast') {
    run('pg_ctl', ['-D', this.data, '-m', mode, '-w', 'stop']);
  }

  destroy() {
    if (!live.delete(this)) return;
    if (fs.existsSync(path.join(this.data, 'postmaster.pid'))) {
      try {
        this.stop('immediate');
      } catch { /* removed below all the same */ }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function destroyAll() {
  for (const cluster of [...live]) cluster.destroy();
}
process.on('exit', destroyAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    destroyAll();
    process.kill(process.pid, signal);
  });
}

module.exports = { Cluster };
