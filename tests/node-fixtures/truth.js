// The fixtures' ground truth: with NODE_TRUTH=FILE, every async_hooks event
// of the process is written to FILE with fs.writeSync, one per line: `init ID
// TYPE TRIGGER`, `before ID`, `after ID`, `destroy ID`. Without it, async_hooks
// stays off (the way users run). Required first, before the fixture makes any
// resource.
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
