// Hello-world HTTP/1.1 server on Node's own `http` module (standard library
// only), keep-alive. Prints `listening on ADDR` on stderr and serves until
// killed (SIGTERM).
//
// With BENCH_ASYNC_HOOKS=1, in-process async_hooks is on as Node users enable
// it: a createHook with all four callbacks, each doing trivial work (counting).
'use strict';
const http = require('http');

if (process.env.BENCH_ASYNC_HOOKS === '1') {
  const counts = { init: 0, before: 0, after: 0, destroy: 0 };
  require('async_hooks').createHook({
    init() { counts.init++; },
    before() { counts.before++; },
    after() { counts.after++; },
    destroy() { counts.destroy++; },
  }).enable();
}

const body = Buffer.from('Hello World\n');
const server = http.createServer((request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  response.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address();
  process.stderr.write(`listening on ${address}:${port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
