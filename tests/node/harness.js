'use strict';
// What the scripts here share: settings from the environment (tests/node/test_node_sdks.py sets
// them), waiting for a condition, and one way to end: "ok" and exit 0, or the error and exit 1.

const assert = require('node:assert/strict');

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

async function waitFor(predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The members of a twin section without `$version` and `$metadata`. */
function members(section) {
  return Object.fromEntries(Object.entries(section).filter(([k, v]) => !k.startsWith('$') && typeof v !== 'function'));
}

function run(main) {
  main().then(
    () => { console.log('ok'); process.exit(0); },
    (err) => { console.error(err && err.stack ? err.stack : err); process.exit(1); }
  );
}

module.exports = { assert, env, members, run, waitFor };
