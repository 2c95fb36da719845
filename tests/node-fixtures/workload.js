// A workload of Node's native async resources, from the standard library only:
// a TCP server and clients on loopback, fs reads (callback and promise API),
// dns.lookup('localhost'), zlib, a child process, timers, setImmediate,
// process.nextTick and promises.
//
// With NODE_TRUTH=FILE, every async_hooks event is written to FILE with
// fs.writeSync (`truth.js`), one per line: `init ID TYPE TRIGGER`, `before
// ID`, `after ID`, `destroy ID`; the tracer's events are compared with it by
// exact id.
// Without it, async_hooks stays off (the way users run), and the tracer's
// per-type counts are compared with a run that had it on.
//
// It writes nothing to stdout or stderr: Node creates process.stdout/stderr
// lazily (a PIPEWRAP or TTYWRAP each), so any output would change the set of
// resources depending on where it goes. With NODE_WAIT_SIGNAL=1 (for `trace
// -p` tests, which attach to the running process) it writes `ready PID` to
// NODE_PORT_FILE and waits for SIGUSR2 before it starts.
'use strict';
const fs = require('fs');
const net = require('net');
const dns = require('dns');
const zlib = require('zlib');
const childProcess = require('child_process');

require('./truth');

// A native resource of the main script itself (its trigger is async id 1).
fs.stat(__filename, (err) => {
  if (err) throw err;
});

const CLIENTS = 4;
const ROUNDS = Number(process.env.NODE_ROUNDS || 2);

function tcpRound(done) {
  const server = net.createServer((socket) => {
    socket.on('data', (data) => socket.write(data));
    socket.on('end', () => socket.end());
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    let left = CLIENTS;
    for (let i = 0; i < CLIENTS; i++) {
      const client = net.connect(port, '127.0.0.1', () => client.write(`hello ${i}`));
      client.on('data', () => client.end());
      client.on('close', () => {
        if (--left === 0) server.close(done);
      });
    }
  });
}

function fsRound(done) {
  fs.readFile(__filename, (err) => {
    if (err) throw err;
    fs.promises.readFile(__filename).then(() => fs.promises.open(__filename, 'r'))
      .then((handle) => handle.stat().then(() => handle.close()))
      .then(() => done());
  });
}

function dnsRound(done) {
  dns.lookup('localhost', (err) => {
    if (err) throw err;
    done();
  });
}

function zlibRound(done) {
  zlib.gzip(Buffer.alloc(4096, 'a'), (err, zipped) => {
    if (err) throw err;
    zlib.gunzip(zipped, (err2) => {
      if (err2) throw err2;
      done();
    });
  });
}

function childRound(done) {
  childProcess.execFile('/bin/true', [], (err) => {
    if (err) throw err;
    done();
  });
}

function timersRound(done) {
  setTimeout(() => setImmediate(() => process.nextTick(() => Promise.resolve().then(done))), 1);
}

const steps = [tcpRound, fsRound, dnsRound, zlibRound, childRound, timersRound];

function run(round) {
  if (round === ROUNDS) {
    // Let async_hooks' batched destroys run before the process exits.
    setTimeout(() => {}, 50);
    return;
  }
  let step = 0;
  const next = () => (step < steps.length ? steps[step++](next) : run(round + 1));
  next();
}

if (process.env.NODE_WAIT_SIGNAL) {
  // Keep the loop alive until the signal comes.
  const keep = setInterval(() => {}, 1000);
  process.once('SIGUSR2', () => {
    clearInterval(keep);
    run(0);
  });
  fs.writeFileSync(process.env.NODE_PORT_FILE, `ready ${process.pid}\n`);
} else {
  run(0);
}
