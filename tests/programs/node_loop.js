// node_loop ITERATIONS: a Node.js timer and file loop under checkpoint and restore.
//
// Every 100 ms (setTimeout, libuv's timer in its epoll loop) it reads 64
// bytes of its own source at a moving offset, feeds them and the file's
// size to a SHA-256 and prints `tick I HASH16`; a worker thread answers a
// message each tick. At the end, `ok node_loop DIGEST`, the same in every
// run, interrupted or not.
"use strict";
const fs = require("fs");
const crypto = require("crypto");
const { Worker } = require("worker_threads");

const n = Number(process.argv[2] ?? 100);
const fd = fs.openSync(__filename, "r");
const size = fs.fstatSync(fd).size;
const h = crypto.createHash("sha256");
const worker = new Worker(
  "const { parentPort } = require('worker_threads');" +
    "parentPort.on('message', (i) => parentPort.postMessage(i * 7 + 1));",
  { eval: true },
);
let i = 0;
console.log("ready", process.pid);

function tick() {
  worker.postMessage(i);
}

worker.on("message", (answer) => {
  const buf = Buffer.alloc(64);
  fs.readSync(fd, buf, 0, 64, (i * 97) % size);
  h.update(buf);
  h.update(String(answer));
  console.log("tick", i, h.copy().digest("hex").slice(0, 16));
  if (++i < n) setTimeout(tick, 100);
  else {
    console.log("ok node_loop", h.digest("hex"));
    worker.terminate();
  }
});
setTimeout(tick, 100);
