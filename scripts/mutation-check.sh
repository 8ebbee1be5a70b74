#!/usr/bin/env bash
# The mutation check of the leak defences (issue 14): each defence is switched
# off in turn in a scratch copy of the committed sources (a git worktree of
# HEAD, never the working tree), and the test that guards it must then fail.
# The leak corpus (test/e2e/relay-leak-corpus.test.ts) guards the policy's
# defences; the audit, rule-change, FailoverOnly and dedup defences have their
# own tests. Every test first runs unmutated and must pass.
#   scripts/mutation-check.sh            all mutations
#   scripts/mutation-check.sh NAME...    only these (names in the table below)
# Prints one line per mutation ("killed" when its test failed) and exits 1 if
# any mutation survived, did not apply, or a test failed unmutated.
# Runs e2e tests (Postfix, the Gmail emulator): needs what make install sets up.
# Not mutated: the linear-time glob matcher (a backtracking one would not finish in bounded
# time on the adversarial values; the timing assertions of test/unit/relay-exclusions.test.ts and
# the leak corpus guard it).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d /tmp/mc-mutation-XXXXXX)
wt=$work/src
cleanup() { git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
git worktree add --detach "$wt" HEAD >/dev/null 2>&1 || { echo "mutation-check: git worktree add failed" >&2; exit 1; }
ln -s "$root/node_modules" "$wt/node_modules"
# Type errors a mutation may cause are not what is measured: ts-jest without diagnostics.
cat > "$wt/jest.mutation.config.js" <<'JS'
import base from './jest.config.js';
export default {
  ...base,
  projects: base.projects.map((p) => ({ ...p, transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, diagnostics: false }] } })),
};
JS

# name | file | text to replace (exactly once) | replacement | guarding test
MUTATIONS=$(cat <<'TABLE'
whole-section-fail-closed|src/relay/inbound/headers.ts|  if (!complete) return [[UNEVALUATED,|  if (!complete && false) return [[UNEVALUATED,|test/e2e/relay-leak-corpus.test.ts
header-limit-64k|src/relay/inbound/headers.ts|export const MAX_HEADER_BYTES = 1024 * 1024;|export const MAX_HEADER_BYTES = 64 * 1024;|test/e2e/relay-leak-corpus.test.ts
unfolding|src/relay/inbound/headers.ts|      out[out.length - 1]![1] += ` ${line.trim()}`;|      void out;|test/e2e/relay-leak-corpus.test.ts
case-insensitive-names|src/relay/inbound/headers.ts|out.push([line.slice(0, colon).trim().toLowerCase(), |out.push([line.slice(0, colon).trim(), |test/e2e/relay-leak-corpus.test.ts
rfc2047-decoding|src/relay/policy/header-values.ts|  const decoded = raw.includes('=?') ? decodeEncodedWords(raw) : raw;|  const decoded = raw;|test/e2e/relay-leak-corpus.test.ts
structured-reading|src/relay/policy/header-values.ts|  if (/[("\\]/.test(raw) \|\| /[("\\]/.test(decoded)) {|  if (false) {|test/e2e/relay-leak-corpus.test.ts
every-occurrence|src/relay/policy/exclusions.ts|  for (const v of p.readings.get(name) ?? []) {|  for (const v of (p.readings.get(name) ?? []).slice(0, 1)) {|test/e2e/relay-leak-corpus.test.ts
canonical-addresses|src/relay/policy/address.ts|  return `${local}@${domain}`;|  return address;|test/e2e/relay-leak-corpus.test.ts
sender-headers|src/relay/policy/exclusions.ts|  const senders = (p.senders ??= senderAddresses(facts.headers));|  const senders: MatchValue[] = [];|test/e2e/relay-leak-corpus.test.ts
rules-follow-changes|src/relay/scheduler/scheduler.ts|      if (dest === 'backup') recipients = await this.gate(entry, recipients);|      if (dest === 'backup') recipients = [...recipients];|test/e2e/relay-rule-change.test.ts
spooled-mail-decided-again|src/relay/scheduler/backup-gate.ts|  return !decidedByThisProcess \|\||  return false &&|test/e2e/relay-rule-change.test.ts
write-ahead-audit|src/relay/scheduler/report.ts|      await this.d.audit.intent(message, recipients, reasons);|      void this.d.audit.intent(message, recipients, reasons).catch(() => undefined);|test/e2e/relay-audit-full.test.ts
audit-hash-chain|src/relay/audit/read.ts|        if (r.prev !== prev) return fail(|        if (r.prev !== prev && false) return fail(|test/unit/relay-audit.test.ts
failover-only-recipient-deferral|src/relay/policy/policy.ts|  else if (ctx.primaryRecipientDeferral && !spec.failover.copyRecipientDeferrals)|  else if (false)|test/unit/relay-policy.test.ts
dedup-query-quoted|src/relay/transports/gmail/dedup-query.ts|  return `rfc822msgid:"${id}"`;|  return `rfc822msgid:${id}`;|test/e2e/gmail-transport.test.ts
TABLE
)

run_test() { # file -> 0 when it passes
  (cd "$wt" && NODE_OPTIONS=--experimental-vm-modules timeout 600 npx jest -c jest.mutation.config.js "$1" >"$work/last.log" 2>&1)
}

# Fields are split on "|" not preceded by a backslash ("\|" is a literal bar).
split() { perl -e 'print join("\0", map { s/\\\|/|/gr } split(/(?<!\\)\|/, $ARGV[0], -1))' -- "$1"; }

selected=("$@")
status=0
declare -A baseline
while IFS= read -r row; do
  [ -n "$row" ] || continue
  mapfile -d '' f < <(split "$row")
  name=${f[0]} file=${f[1]} from=${f[2]} to=${f[3]} test=${f[4]}
  if [ ${#selected[@]} -gt 0 ] && [[ ! " ${selected[*]} " == *" $name "* ]]; then continue; fi
  if [ -z "${baseline[$test]:-}" ]; then
    if run_test "$test"; then baseline[$test]=pass; else
      baseline[$test]=fail
      echo "BASELINE FAILED  $test (unmutated): see below"; tail -30 "$work/last.log"; status=1
    fi
  fi
  [ "${baseline[$test]}" = pass ] || continue
  cp "$wt/$file" "$work/orig"
  if ! FROM=$from TO=$to node -e '
    const fs = require("fs"); const [p] = process.argv.slice(1); const s = fs.readFileSync(p, "utf8");
    const n = s.split(process.env.FROM).length - 1;
    if (n !== 1) { console.error(`found ${n} times`); process.exit(1); }
    fs.writeFileSync(p, s.replace(process.env.FROM, () => process.env.TO));' "$wt/$file"; then
    printf '%-34s NOT APPLIED (the text is not in %s: update the table)\n' "$name" "$file"; status=1; continue
  fi
  start=$(date +%s)
  if run_test "$test"; then
    printf '%-34s SURVIVED  %s passed with the defence off (%ss)\n' "$name" "$test" $(( $(date +%s) - start )); status=1
  else
    failed=$(grep -E '^\s+✕' "$work/last.log" | head -2 | sed -E 's/^\s+✕ //; s/ \([0-9]+ ms\)$//' | paste -sd ';' -)
    printf '%-34s killed    %s: %s (%ss)\n' "$name" "$test" "${failed:-the suite failed}" $(( $(date +%s) - start ))
  fi
  cp "$work/orig" "$wt/$file"
done <<< "$MUTATIONS"
exit $status
