// The exclusion policy's own cost per message, in-process (no SMTP, no disk):
// what intake (parse the header section, keep the fields the rules name) and the
// backup gate (read the section back from the body, decide again) add for each
// message, with 0 and with 10 rules, side by side in one run. Complements the
// end-to-end ratio of bench/relay-vs-postfix.ts --targets relay,relay-rules,
// which a loaded machine makes noisy. Not a test: prints a table.
//   node --import tsx bench/policy-eval.ts [--messages 20000]
import { parseArgs } from 'node:util';
import { MailContinuitySpec } from '../src/api/v1alpha1/mailcontinuity.js';
import { HeaderCollector, parseHeaders, policyHeaders } from '../src/relay/inbound/headers.js';
import { headerNamesOfInterest, matchExclusion } from '../src/relay/policy/exclusions.js';
import { validSpec } from '../test/fixtures/mailcontinuity.js';
import { exclusionRules } from './exclusion-rules.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '20000' } } });
const n = Number(values.messages);

const rulesOf = (k: number) => MailContinuitySpec.parse({ ...validSpec(), policy: { exclude: exclusionRules(k) } }).policy.exclude;

/** A header section like Outlook's (about 3 KB: Received lines, an encoded Subject, a Sensitivity-free body). */
const message = (i: number) =>
  Buffer.from(
    [
      `Received: from mx${i % 7}.partner.example.net (mx.partner.example.net [203.0.113.${i % 250}]) by relay.corp.example.com with ESMTPS id ${i.toString(16)}; Thu, 3 Dec 2026 18:00:00 +0000`,
      ...Array.from({ length: 8 }, (_, k) => `Received: from hop${k}.example.net (hop${k}.example.net [198.51.100.${k}]) by hop${k + 1}.example.net with ESMTP; Thu, 3 Dec 2026 17:59:${String(k).padStart(2, '0')} +0000`),
      `From: "=?utf-8?q?Gr=C3=BC=C3=9Fe_Partner?=" <sender${i}@partner.example.net>`,
      'To: Alice <alice@corp.example.com>, Bob <bob@corp.example.com>',
      'Cc: team@corp.example.com',
      `Subject: =?utf-8?q?Quartalszahlen_Q3_=E2=80=93_Entwurf_${i}?=`,
      `Message-ID: <${i}.bench@partner.example.net>`,
      'Date: Thu, 3 Dec 2026 18:00:00 +0000',
      'MIME-Version: 1.0',
      'Content-Type: multipart/alternative; boundary="b1"',
      'Thread-Topic: Quartalszahlen',
      'X-MS-Exchange-Organization-AuthAs: Anonymous',
      `X-MS-Has-Attach: yes`,
      '',
      '--b1',
      'body',
    ].join('\r\n'),
  );

let round = 0;
function run(k: number): number {
  const rules = rulesOf(k);
  const names = headerNamesOfInterest(rules);
  // Every message its own values (a Subject and sender each): no reading is shared between messages.
  const msgs = Array.from({ length: n }, (_, i) => message(k * n + i + round * 1_000_000));
  let kept = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const body = msgs[i]!;
    // Intake and the gate each read the section and decide; the gate's re-read is the same work.
    for (let pass = 0; pass < 2; pass++) {
      const section = new HeaderCollector().push(body) ?? new HeaderCollector().end();
      const headers = policyHeaders(parseHeaders(section.block), section.complete, names);
      for (const rcpt of ['alice@corp.example.com', 'bob@corp.example.com']) if (!matchExclusion(rules, { mailFrom: `s${i}@partner.example.net`, headers, receivedAt: 0 }, rcpt)) kept++;
    }
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  if (kept !== n * 4) throw new Error(`a rule matched the benchmark's mail (${kept} of ${n * 4} copies kept)`);
  return us;
}

const rows: Array<[number, number[]]> = [
  [0, []],
  [10, []],
];
for (; round < 5; round++) for (const row of round % 2 ? [...rows].reverse() : rows) row[1].push(run(row[0]));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  [
    `${n} messages per round, 5 rounds alternating, two recipients, intake and gate both counted (µs per message):`,
    '| rules | µs per message (median of 5) | rounds |',
    '|---:|---:|---|',
    ...rows.map(([k, xs]) => `| ${k} | ${median(xs).toFixed(1)} | ${xs.map((x) => x.toFixed(1)).join(', ')} |`),
    '',
  ].join('\n'),
);
