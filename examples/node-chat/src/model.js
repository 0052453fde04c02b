'use strict';
// A local stand-in for an LLM: streams a reply token by token.  What it does
// is chosen by the prompt, so tests (and curious humans) can ask for it:
//   "fail ..."         throws before the first token
//   "fail midway ..."  throws after the first token
//   "slow ..."         waits `slowMs` before every token
// Anything else is echoed back quickly.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ModelError extends Error {}

function createFakeModel({ slowMs = 50, fastMs = 1 } = {}) {
  return async function* complete(prompt) {
    const words = `You said: ${prompt}`.split(' ');
    const delay = prompt.startsWith('slow') ? slowMs : fastMs;
    if (prompt.startsWith('fail midway')) {
      yield `${words[0]} `;
      throw new ModelError('the model stopped answering');
    }
    if (prompt.startsWith('fail')) {
      throw new ModelError('the model is unavailable');
    }
    for (const word of words) {
      await sleep(delay);
      yield `${word} `;
    }
  };
}

module.exports = { createFakeModel, ModelError };
