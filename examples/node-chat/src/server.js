'use strict';
// POST /chat {"team": "...", "prompt": "..."}
//
//   reserve a credit  ->  denied:  402 {creditsUsed, creditsLimit, resetsAt}, before any streaming
//                     ->  granted: stream the model's reply as NDJSON, then
//                                  commit the credit when the reply is complete, or
//                                  release it when the model fails or the client goes away.
//
// A hold that is never settled (the process died) expires after `holdFor`
// and its credit returns to the team by itself.
const http = require('node:http');

const MAX_BODY = 64 * 1024;
const NO_CREDIT_SPENT = 'the model failed; no credit was spent';

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      text += chunk;
      if (text.length > MAX_BODY) reject(new Error('request body too large'));
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function createChatServer({ credits, model, log = () => {} }) {
  async function chat(req, res) {
    let body;
    try {
      body = await readJson(req);
    } catch {
      return sendJson(res, 400, { error: 'expected a JSON body' });
    }
    const { team, prompt } = body ?? {};
    if (typeof team !== 'string' || team === '' || typeof prompt !== 'string') {
      return sendJson(res, 400, { error: 'expected {"team": string, "prompt": string}' });
    }

    let grant;
    try {
      grant = await credits.reserve(team);
    } catch (err) {
      if (err.code === 'P0002') return sendJson(res, 404, { error: `unknown team "${team}"` });
      throw err;
    }
    if (!grant.granted) {
      return sendJson(res, 402, {
        creditsUsed: grant.used,
        creditsLimit: grant.creditLimit,
        resetsAt: grant.resetsAt,
      });
    }

    // From here on the hold must be settled exactly once.
    let settled = false;
    const release = async () => {
      if (settled) return;
      settled = true;
      await credits.release(grant.reservation);
    };
    let clientGone = false;
    res.on('close', () => {
      if (!res.writableFinished) clientGone = true;
    });

    const reply = model(prompt)[Symbol.asyncIterator]();
    let step;
    try {
      step = await reply.next();
    } catch (err) {
      log(`model failed before answering: ${err.message}`);
      await release();
      return sendJson(res, 502, { error: NO_CREDIT_SPENT });
    }

    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    try {
      for (; !step.done; step = await reply.next()) {
        if (clientGone) throw new Error('the client went away');
        res.write(`${JSON.stringify({ token: step.value })}\n`);
      }
    } catch (err) {
      log(`reply abandoned: ${err.message}`);
      await release();
      return res.end(`${JSON.stringify({ error: NO_CREDIT_SPENT })}\n`);
    }

    settled = true;
    const after = await credits.commit(grant.reservation);
    res.end(`${JSON.stringify({ done: true, creditsUsed: after.used, creditsLimit: after.creditLimit, resetsAt: after.resetsAt })}\n`);
  }

  return http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/chat') {
      return sendJson(res, 404, { error: 'not found' });
    }
    chat(req, res).catch((err) => {
      log(`internal error: ${err.stack}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.end();
    });
  });
}

module.exports = { createChatServer };
