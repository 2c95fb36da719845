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
// `--js-resources` arms its watchpoints once the first main-thread callback
// has run and the reader has seen it, which can take tens of milliseconds on
// a loaded machine: an Immediate runs a callback at once, and the rounds
// start only after a pause long enough for the arming, so that what they make
// is watched (the test compares only resources made after the arming).
setImmediate(() => {});
setTimeout(() => round(ROUNDS), 250);
