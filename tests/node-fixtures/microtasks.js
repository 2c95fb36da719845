// queueMicrotask's Microtask resources, next to promises, ticks, timers and
// immediates, for `--js-resources`: a Microtask queued from a timer, from a
// promise callback, from another Microtask, and one that queues a tick and an
// immediate.
//
// With NODE_TRUTH=FILE, every async_hooks event is written to FILE
// (`truth.js`). It writes nothing to stdout or stderr.
'use strict';
require('./truth');

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
