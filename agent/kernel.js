// The JavaScript session kernel: one Node process whose globals (and top-level
// let/const/class declarations) live across cells, like a notebook kernel. The
// agent starts it with fd 3 carrying cells (one JSON object per line) and fd 4
// taking replies; each cell names two FIFOs that become the cell's stdout and
// stderr for as long as it runs.
'use strict';
// Everything is inside a function so the kernel's own names never clash with the
// cells' top-level declarations, which live in the global scope.
(function kernel() {
const fs = require('fs');
const vm = require('vm');
const readline = require('readline');

let outFd = null;
let errFd = null;
function writer(which) {
  return function (chunk, encoding, cb) {
    const fd = which === 1 ? outFd : errFd;
    if (fd !== null) {
      try {
        fs.writeSync(fd, typeof chunk === 'string' ? chunk : Buffer.from(chunk));
      } catch (e) { /* the reader went away */ }
    }
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}
process.stdout.write = writer(1);
process.stderr.write = writer(2);

const realExit = process.exit.bind(process);
class CellExit {
  constructor(code) { this.code = code; }
}
process.exit = (code) => { throw new CellExit(code === undefined ? 0 : Number(code) | 0); };
process.on('uncaughtException', (e) => { process.stderr.write(String(e && e.stack || e) + '\n'); });
process.on('unhandledRejection', (e) => { process.stderr.write(String(e && e.stack || e) + '\n'); });

globalThis.require = require;
globalThis.module = module;

// userStack drops the kernel's frames from an error's stack.
function userStack(e) {
  const lines = String(e && e.stack || e).split('\n');
  const cut = lines.findIndex((l) => /node:vm|\[eval\]/.test(l));
  return (cut > 0 ? lines.slice(0, cut) : lines).join('\n');
}

// interrupt rejects the wait for the running cell's promise; SIGINT (the
// agent's timeout) calls it. Between cells SIGINT does nothing.
let interrupt = null;
process.on('SIGINT', () => {
  if (interrupt) {
    const err = new Error('Script execution interrupted.');
    err.code = 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
    interrupt(err);
  }
});

async function run(cell) {
  outFd = fs.openSync(cell.stdout, 'w');
  errFd = fs.openSync(cell.stderr, 'w');
  let rc = 0;
  try {
    if (cell.dir) process.chdir(cell.dir);
    Object.assign(process.env, cell.env || {});
    // A timeout interrupts the cell (SIGINT): its synchronous code throws
    // ERR_SCRIPT_EXECUTION_INTERRUPTED, and a promise it is awaiting is given up.
    let result = vm.runInThisContext(cell.code, { filename: 'cell.js', breakOnSigint: true });
    if (result && typeof result.then === 'function') {
      await Promise.race([result, new Promise((resolve, reject) => { interrupt = reject; })]);
    }
  } catch (e) {
    if (e instanceof CellExit) {
      rc = e.code;
    } else if (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
      process.stderr.write('Error: the execution was interrupted (timed out)\n');
      rc = 130; // as Python's KeyboardInterrupt
    } else {
      process.stderr.write(userStack(e) + '\n');
      rc = 1;
    }
  } finally {
    interrupt = null;
    fs.closeSync(outFd);
    fs.closeSync(errFd);
    outFd = errFd = null;
  }
  return rc;
}

const lines = readline.createInterface({ input: fs.createReadStream(null, { fd: 3 }) });
const queue = [];
let busy = false;
async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const cell = JSON.parse(queue.shift());
    const rc = await run(cell);
    // The process's peak resident memory so far (gVisor's /proc keeps no
    // peak): when a cell raised it, it is the cell's peak.
    fs.writeSync(4, JSON.stringify({ token: cell.token, exit_code: rc, maxrss_kb: process.resourceUsage().maxRSS }) + '\n');
  }
  busy = false;
}
lines.on('line', (line) => { queue.push(line); drain(); });
lines.on('close', () => realExit(0));
})();
