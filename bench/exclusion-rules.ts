// Exclusion rules of the kinds a customer writes (header values, senders, recipients), none
// matching the benchmarks' mail: every message is evaluated in full and every copy still goes.
// bench/relay-vs-postfix.ts (--rules N) and bench/policy-eval.ts use the same ones.
export const RULE_KINDS = [
  { header: { name: 'Sensitivity', value: 'Company-Confidential' } },
  { header: { name: 'Subject', value: '*streng vertraulich*' } },
  { header: { name: 'X-Classification', value: 'secret*' } },
  { sender: '*@hr.corp.example.com' },
  { recipient: 'ceo@corp.example.com' },
  { header: { name: 'Subject', value: '*[confidential]*' } },
  { sender: '*@legal.corp.example.com' },
  { header: { name: 'X-Project', value: 'apollo-?' } },
  { recipient: 'board-*@corp.example.com' },
  { header: { name: 'Keywords', value: '*privileged*' } },
];

/** `count` named rules, the kinds in turn. */
export const exclusionRules = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `rule-${i}`, ...RULE_KINDS[i % RULE_KINDS.length] }));
