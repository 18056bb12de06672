import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { HotPatchError, asObject, decodeJson, describe, rejectUnknownFields } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';
import { UsageError } from './cli-error.js';
import { isLoopbackUrl } from './agent-client.js';

/**
 * Where the operator commands find their agent when `--agent` is not given: the environment
 * (`HOTPATCH_AGENT`, `HOTPATCH_TOKEN_FILE`), then the first config file that exists among
 * `./.hotpatch.json` and `$XDG_CONFIG_HOME/hotpatch/config.json` (default
 * `~/.config/hotpatch/config.json`), a JSON object `{"agent": "...", "tokenFile": "..."}`.
 * A flag wins over the environment, which wins over the file. The file is read only when it is
 * needed, bounded, and parsed strictly (an unknown field is INVALID, naming the file).
 */

export interface AgentConfig {
  /** The file it was read from. */
  path: string;
  /** `unix:/absolute/path` or a loopback `http://` URL. */
  agent?: string;
  /** An absolute path. */
  tokenFile?: string;
}

export interface AgentSettings {
  agent: string;
  tokenFile: string | undefined;
  /** Where the agent came from: `--agent`, `HOTPATCH_AGENT` or the config file's path. */
  source: string;
}

const FIELDS: ReadonlySet<string> = new Set(['agent', 'tokenFile']);
const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_VALUE = 4096;

/** The config files looked for, in order (the first that exists is the one read). */
export function configPaths(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string[] {
  const xdg = env.XDG_CONFIG_HOME;
  // The XDG base directory spec: a relative XDG_CONFIG_HOME is invalid and ignored.
  const base = xdg !== undefined && xdg !== '' && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.config');
  return [resolve(cwd, '.hotpatch.json'), join(base, 'hotpatch', 'config.json')];
}

function isHttp(agent: string): boolean {
  return agent.startsWith('http://') || agent.startsWith('https://');
}

function fileError(path: string, error: unknown): never {
  if (error instanceof HotPatchError && error.code !== 'IO') {
    throw new UsageError(`config file ${path}: ${error.message}`, error.code, { cause: error });
  }
  throw error;
}

/** A config file's value: a non-empty string without NUL, bounded. */
function text(obj: Record<string, unknown>, field: string, path: string): string | undefined {
  const v = obj[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_VALUE || v.includes('\0')) {
    throw new UsageError(`config file ${path}: "${field}" must be a non-empty string of at most ${MAX_VALUE} characters, got ${describe(v)}`);
  }
  return v;
}

/**
 * The file says where a token is sent, so: not writable by others, owned by the caller (or
 * root); an HTTP agent in it must be on loopback (the agent only listens there), so a file
 * dropped in a working directory cannot send the operator's token to another host.
 */
async function checkOwner(path: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new HotPatchError('IO', `cannot stat config file ${path}: ${(cause as Error).message}`, { cause });
  }
  const uid = process.getuid?.();
  if ((info.mode & 0o002) !== 0) {
    throw new UsageError(
      `config file ${path} is writable by anyone (mode ${(info.mode & 0o777).toString(8)}); it decides where your token is sent: chmod o-w it`,
    );
  }
  if (uid !== undefined && info.uid !== uid && info.uid !== 0) {
    throw new UsageError(`config file ${path} belongs to uid ${info.uid}, not to you (uid ${uid}); it decides where your token is sent`);
  }
}

/** Parses a config file's bytes; relative paths in it are relative to the file's directory. */
export function parseAgentConfig(bytes: Uint8Array, path: string): AgentConfig {
  let obj: Record<string, unknown>;
  try {
    obj = asObject(decodeJson(bytes, `config file ${path}`), `config file ${path}`);
    rejectUnknownFields(obj, FIELDS, `config file ${path}`);
  } catch (error) {
    return fileError(path, error);
  }
  const dir = dirname(path);
  const config: AgentConfig = { path };
  const agent = text(obj, 'agent', path);
  if (agent !== undefined) {
    if (isHttp(agent)) {
      let url: URL;
      try {
        url = new URL(agent);
      } catch {
        throw new UsageError(`config file ${path}: "agent" ${describe(agent)} is not a valid URL`);
      }
      if (!isLoopbackUrl(url))
        throw new UsageError(`config file ${path}: "agent" ${describe(agent)} is not on loopback (127.0.0.1, [::1], localhost), where the agent listens`);
      config.agent = agent;
    } else {
      config.agent = `unix:${resolve(dir, agent.startsWith('unix:') ? agent.slice(5) : agent)}`;
    }
  }
  const tokenFile = text(obj, 'tokenFile', path);
  if (tokenFile !== undefined) config.tokenFile = resolve(dir, tokenFile);
  return config;
}

/** The first config file that exists, parsed; undefined when there is none. */
export async function loadAgentConfig(paths: readonly string[]): Promise<AgentConfig | undefined> {
  for (const path of paths) {
    let bytes: Uint8Array;
    try {
      bytes = await readFileBounded(path, MAX_CONFIG_BYTES, { noFollow: false, what: 'config file' });
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'NOT_FOUND') continue;
      return fileError(path, error);
    }
    await checkOwner(path);
    return parseAgentConfig(bytes, path);
  }
  return undefined;
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/**
 * The agent and token file to use: `--agent` > `HOTPATCH_AGENT` > the config file's `agent`;
 * `--token-file` > `HOTPATCH_TOKEN_FILE` > the config file's `tokenFile` (looked up only for an
 * HTTP agent: a socket takes no token). No agent anywhere is a usage error saying how to set one.
 */
export async function agentSettings(
  flags: { agent: string | undefined; tokenFile: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<AgentSettings> {
  const paths = configPaths(env, cwd);
  let config: AgentConfig | undefined;
  let read = false;
  const fromFile = async (): Promise<AgentConfig | undefined> => {
    if (!read) config = await loadAgentConfig(paths);
    read = true;
    return config;
  };
  let agent = flags.agent;
  let source = '--agent';
  if (agent === undefined && nonEmpty(env.HOTPATCH_AGENT) !== undefined) {
    agent = env.HOTPATCH_AGENT!;
    source = 'HOTPATCH_AGENT';
  }
  if (agent === undefined) {
    const file = await fromFile();
    if (file?.agent !== undefined) {
      agent = file.agent;
      source = file.path;
    }
  }
  if (agent === undefined) {
    throw new UsageError(
      `no agent given: pass --agent SOCKET_OR_URL, set HOTPATCH_AGENT, or write {"agent": "unix:/path/agent.sock"} ` +
        `(or an http://127.0.0.1:PORT URL with "tokenFile") to ${paths.join(' or ')}`,
    );
  }
  let tokenFile = flags.tokenFile ?? nonEmpty(env.HOTPATCH_TOKEN_FILE);
  if (tokenFile === undefined && isHttp(agent)) tokenFile = (await fromFile())?.tokenFile;
  return { agent, tokenFile, source };
}
