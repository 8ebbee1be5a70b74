// Every relative link of README.md and docs/*.md points at a file or folder of the repository,
// and a #fragment at a heading of the page it names: the docs cannot send a reader nowhere.
import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

const pages = [
  'README.md',
  ...readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

const anchors = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => /^#{1,6} /.test(l))
    .map((l) => anchor(l.replace(/^#+ /, '')));

/** [text](target) links outside code blocks and code spans, without a scheme. */
function links(text: string): string[] {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/.test(t));
}

describe('relative links in the docs', () => {
  it.each(pages)('%s', (page) => {
    const broken: string[] = [];
    for (const target of links(readFileSync(page, 'utf8'))) {
      const [path, fragment] = target.split('#') as [string, string | undefined];
      const file = path ? normalize(join(dirname(page), path)) : page;
      if (!existsSync(file)) broken.push(`${target}: no ${file}`);
      else if (fragment && file.endsWith('.md') && !anchors(file).includes(fragment))
        broken.push(`${target}: no heading #${fragment} in ${file}`);
    }
    expect(broken).toEqual([]);
  });
});
