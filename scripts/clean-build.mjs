// Empties the compiler's outputs before a build (dist/src, dist/ui, dist/test, dist/bench,
// dist/examples): tsc never deletes what a removed source once produced, and a stale file would
// be served (dist/ui) or shipped (dist/src). dist/test-artifacts is kept.
import { rmSync } from 'node:fs';

for (const dir of ['src', 'ui', 'test', 'bench', 'examples']) rmSync(`dist/${dir}`, { recursive: true, force: true });
