/*
 * Real native addons for the isolation tests: a few lines of C against Node-API, compiled by
 * the test with the system's C compiler and the headers the nodejs package ships
 * (/usr/include/node), into a `.node` file whose bytes become a patch payload.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where Node's own headers are (node_api.h): under the install prefix of the running node. */
function nodeIncludeDir(): string {
  const prefix = (process.config.variables as { node_prefix?: string }).node_prefix ?? '/usr';
  for (const dir of [join(prefix, 'include', 'node'), '/usr/include/node', '/usr/local/include/node']) {
    if (existsSync(join(dir, 'node_api.h'))) return dir;
  }
  throw new Error('node_api.h not found (install the Node.js headers: apt-get install -y nodejs libnode-dev, or Node from nodejs.org)');
}

/**
 * An addon exporting `add(a, b)`. `crashAbove`: add() dereferences NULL (a real SIGSEGV) when
 * a exceeds it. `tag` is compiled in, so two builds with different tags have different bytes.
 */
export function addonSource(options: { crashAbove?: number; tag?: string } = {}): string {
  const crash = options.crashAbove === undefined ? '' : `if (a > ${options.crashAbove}) { volatile int *p = 0; *p = 42; }`;
  return `#include <node_api.h>
static const char *TAG = ${JSON.stringify(options.tag ?? 'addon')};
static napi_value Add(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2]; double a = 0, b = 0; napi_value result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_value_double(env, argv[0], &a);
  napi_get_value_double(env, argv[1], &b);
  ${crash}
  napi_create_double(env, a + b, &result);
  return result;
}
static napi_value Tag(napi_env env, napi_callback_info info) {
  napi_value result; napi_create_string_utf8(env, TAG, NAPI_AUTO_LENGTH, &result); return result;
}
NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "add", NAPI_AUTO_LENGTH, Add, NULL, &fn);
  napi_set_named_property(env, exports, "add", fn);
  napi_create_function(env, "tag", NAPI_AUTO_LENGTH, Tag, NULL, &fn);
  napi_set_named_property(env, exports, "tag", fn);
  return exports;
}
`;
}

/** Compiles `source` (C, Node-API) into a `.node` shared library and returns its bytes. */
export async function buildAddon(source: string): Promise<Uint8Array> {
  const include = nodeIncludeDir();
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-addon-'));
  try {
    await writeFile(join(dir, 'addon.c'), source);
    const out = join(dir, 'addon.node');
    try {
      await run('cc', ['-shared', '-fPIC', '-O1', '-I', include, '-o', out, join(dir, 'addon.c')]);
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT') throw new Error('no C compiler (cc) on PATH: apt-get install -y gcc (or build-essential)');
      throw new Error(`compiling the test addon failed: ${e.stderr ?? e.message}`);
    }
    return new Uint8Array(await readFile(out));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
