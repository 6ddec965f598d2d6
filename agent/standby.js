// A node standby: a node process the agent starts (as root) ahead of any
// request, so that a JavaScript (or compiled TypeScript) execution skips node's
// start-up. Node cannot fork a prepared interpreter, so each execution gets a
// standby of its own, started fresh. It has its stdin, stdout and stderr (pipes
// to the agent), its limits, process group and cgroup already; fd 3 is its
// control socket. It says "ready", waits for one request ({code, env, dir}),
// drops to the sandbox user for good, takes the working directory and
// environment, and runs the code as `node -e` would (a CommonJS script named
// [eval] with require, module, exports, __filename and __dirname). When node
// exits it closes its output, reports its exit status and resource usage on
// the control socket, and waits for the agent to have told the host. Its one
// argument is JSON: uid, gid and env (the environment most executions get,
// taken ahead).
// Everything is inside a function: the code runs in the global scope, where
// the names of this script must not be.
(() => {
  'use strict';
  const fs = require('fs');
  const path = require('path');
  const vm = require('vm');
  const Module = require('module');

  const CONTROL = 3;
  const config = JSON.parse(process.argv[1]);
  process.argv.length = 1; // as under node -e

  // setEnv makes env the process's environment, unless it already is.
  function setEnv(env) {
    const keys = Object.keys(process.env);
    if (keys.length === Object.keys(env).length && keys.every((k) => process.env[k] === env[k])) {
      return;
    }
    for (const k of keys) delete process.env[k];
    Object.assign(process.env, env);
  }

  // The environment executions here get unless their request sets other
  // variables, and the user's groups: taken now, so most requests need not
  // change them (under gVisor setgroups and setgid take ~1 ms each in a node,
  // whose every thread must change too). The uid stays root until the request:
  // the user's processes can neither signal nor trace this one.
  setEnv(config.env || {});
  process.setgroups([]);
  process.setgid(config.gid);

  // What the request's path would do first, done now (the first run of code in
  // V8 compiles it): decoding the request, the compiler, the module loader, the
  // modules a stdio stream on a pipe is made of, and console.log's formatting
  // and writing, on a console that writes nowhere (the first console.log took
  // ~6 ms here, ~1 ms after this). The real streams are left to the code, as
  // under node -e (making stdout and stderr here measured no faster).
  JSON.parse(Buffer.from(JSON.stringify({ code: '0', env: config.env || {}, dir: '/' })).toString('utf8'));
  new vm.Script('0', { filename: '[prepare]' }).runInThisContext();
  new Module('[prepare]').paths = Module._nodeModulePaths('/');
  Module.createRequire(path.join('/', '[eval]'));
  require('net');
  new console.Console(new (require('stream').Writable)({ write() {} })).log(1); // its write never ends: nothing is left to run

  // What the control socket is, to know it at the end (see the exit handler).
  const fstat = fs.fstatSync;
  const fileID = (fd) => {
    try {
      const st = fstat(fd, { bigint: true });
      return `${st.dev}:${st.ino}`;
    } catch {
      return '';
    }
  };
  const controlID = fileID(CONTROL);

  fs.writeSync(CONTROL, 'ready');
  const buf = Buffer.allocUnsafeSlow(4 << 20); // only the bytes read are looked at
  let n;
  for (;;) {
    try {
      n = fs.readSync(CONTROL, buf, 0, buf.length, null);
      break;
    } catch (e) {
      if (e.code !== 'EINTR' && e.code !== 'EAGAIN') throw e;
    }
  }
  if (n <= 0) process.exit(0); // the agent let it go
  const req = JSON.parse(buf.toString('utf8', 0, n));

  try {
    process.setuid(config.uid);
    process.chdir(req.dir);
    setEnv(req.env);
  } catch (e) {
    fs.writeSync(2, `faas: setting up the process failed: ${e}\n`);
    process.exit(127);
  }

  // Node prints an uncaught exception after 'exit' is emitted: then the process
  // reports nothing (the agent kills an execution's processes once it has the
  // report) and its exit status comes from its end, after the message.
  let uncaught = false;
  process.on('uncaughtExceptionMonitor', () => {
    uncaught = true;
  });
  process.on('exit', (code) => {
    if (uncaught) return;
    // Output ends here: the agent reads to the end without waiting for this
    // process to be torn down.
    for (const fd of [0, 1, 2]) {
      try {
        fs.closeSync(fd);
      } catch {}
    }
    // The report goes on the control socket only if it is still there: code
    // that closed it may have opened a file or socket of its own on its
    // number, which must not get the report, nor keep this process waiting
    // (the agent then has the exit from the process's end).
    if (fileID(CONTROL) !== controlID) return;
    const u = process.resourceUsage();
    try {
      fs.writeSync(CONTROL, JSON.stringify({ status: code & 0xff, utime_us: u.userCPUTime, stime_us: u.systemCPUTime, maxrss_kb: u.maxRSS }));
      // Exit once the agent has told the host (it closes its end, or kills
      // this process): the teardown is then off the answer's path.
      fs.readSync(CONTROL, Buffer.alloc(1));
    } catch {}
  });

  const filename = path.join(process.cwd(), '[eval]');
  const main = new Module('[eval]');
  main.filename = filename;
  main.paths = Module._nodeModulePaths(process.cwd());
  globalThis.module = main;
  globalThis.exports = main.exports;
  globalThis.require = Module.createRequire(filename);
  globalThis.__filename = '[eval]';
  globalThis.__dirname = '.';
  // isModuleSyntax reports whether code that failed to compile as a script
  // (with err) is module code, as node -e decides: import, export, import.meta,
  // or await at the top level (also inside an expression, where the message
  // names no await: the code then compiles as an async function's body).
  const moduleOnly = /^(await is only valid|Cannot use import statement|Unexpected token 'export'|Cannot use 'import\.meta')/;
  function isModuleSyntax(code, err) {
    if (moduleOnly.test(err.message)) {
      return true;
    }
    try {
      new vm.Script(`(async () => {\n${code}\n})`, { filename: '[eval]' });
      return /\bawait\b/.test(code);
    } catch (e) {
      return moduleOnly.test(e.message); // import.meta as well
    }
  }

  let script;
  try {
    script = new vm.Script(req.code, { filename: '[eval]' });
  } catch (e) {
    // node -e runs code with module syntax (import, export, top-level await) as
    // an ES module: so does a new node, run in this one's place (its stdio,
    // limits and group), whose exit is this one's.
    if (e instanceof SyntaxError && isModuleSyntax(req.code, e)) {
      const r = require('child_process').spawnSync(process.execPath, ['-e', req.code], { stdio: 'inherit' });
      process.exitCode = r.status ?? 128 + (require('os').constants.signals[r.signal] || 0);
      return;
    }
    throw e;
  }
  script.runInThisContext();
})();
