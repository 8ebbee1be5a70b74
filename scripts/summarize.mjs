// Sums jest's --json results of every suite into the one line CI reads:
// "N passed, N failed" (with ", N skipped" when any were skipped).
import { existsSync, readFileSync } from 'node:fs';

const suites = ['unit', 'integration', 'e2e', 'cluster'];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const suite of suites) {
  const file = `.test-results/${suite}.json`;
  if (!existsSync(file)) {
    console.log(`${suite}: no results (${file} missing): counted as 1 failed`);
    failed += 1;
    continue;
  }
  const r = JSON.parse(readFileSync(file, 'utf8'));
  // A suite that failed to load (syntax error, failing beforeAll) has no test results: count it.
  const broken = r.testResults.filter((t) => t.status === 'failed' && t.assertionResults.length === 0).length;
  console.log(
    `${suite}: ${r.numPassedTests} passed, ${r.numFailedTests + broken} failed, ${r.numPendingTests + r.numTodoTests} skipped`,
  );
  passed += r.numPassedTests;
  failed += r.numFailedTests + broken;
  skipped += r.numPendingTests + r.numTodoTests;
}
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
process.exitCode = failed > 0 ? 1 : 0;
