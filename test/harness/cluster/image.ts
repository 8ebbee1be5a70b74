// The project's image and the pod sandbox image, built by scripts/build-image.sh
// from the real Dockerfile (cached: a second run returns at once).
import { spawn } from 'node:child_process';

export interface ProjectImage {
  /** The product image's name (operator and relay). */
  name: string;
  /** Archives to import into the node: the product image and the pause image. */
  archives: string[];
}

export async function projectImage(
  progress: (line: string) => void,
  detail: (line: string) => void = progress,
): Promise<ProjectImage> {
  progress('image: scripts/build-image.sh (the Dockerfile with buildah; cached by its inputs)');
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('scripts/build-image.sh', [], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const line of d.toString().split('\n').filter(Boolean)) detail(`  ${line}`);
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`scripts/build-image.sh failed (${code}):\n${stderr.slice(-3000)}`)),
    );
  });
  const lines = out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((p) => p.length === 2) as [string, string][];
  const product = lines.find(([n]) => !n.includes('/pause:'));
  if (!product || lines.length < 2) throw new Error(`scripts/build-image.sh printed no "NAME ARCHIVE" lines:\n${out}`);
  return { name: product[0], archives: lines.map(([, a]) => a) };
}
