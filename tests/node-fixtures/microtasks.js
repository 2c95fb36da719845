// queueMicrotask's Microtask resources, next to promises, ticks, timers and
// immediates, for `--js-resources`: a Microtask queued from a timer, from a
// promise callback, from another Microtask, and one that queues a tick and an
// immediate.
//
// With NODE_TRUTH=FILE, every async_hooks event is written to FILE with
// fs.writeSync, as workload.js does. It writes nothing to stdout or stderr.
'use strict';
const fs = require('fs');

const truthPath = process.env.NODE_TRUTH;
if (truthPath) {
  const fd = fs.openSync(truthPath, 'w');
  const write = (line) => fs.writeSync(fd, line + '\n');
  require('async_hooks').createHook({
    init(id, type, trigger) { write(`init ${id} ${type} ${trigger}`); },
    before(id) { write(`before ${id}`); },
    after(id) { write(`after ${id}`); },
    destroy(id) { write(`destroy ${id}`); },
  }).enable();
}

const ROUNDS = 3;
function round(left) {
  if (left === 0) {
    // Let async_hooks' batched destroys run before the process exits.
    setTimeout(() => {}, 20);
    return;
  }
  setTimeout(() => {
    queueMicrotask(() => {
      process.nextTick(() => {});
      queueMicrotask(() => {});
    });
    Promise.resolve().then(() => queueMicrotask(() => setImmediate(() => round(left - 1))));
  }, 1);
}
round(ROUNDS);
