// Copies the dashboard's style sheet next to its compiled scripts (dist/ui), where the agent
// serves them from: tsc compiles ui/*.ts there but copies nothing else.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';

mkdirSync('dist/ui', { recursive: true });
for (const name of readdirSync('ui')) if (name.endsWith('.css')) copyFileSync(`ui/${name}`, `dist/ui/${name}`);
