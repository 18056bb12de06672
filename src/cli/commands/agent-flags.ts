import { optionalString } from '../args.js';
import { agentSettings } from '../agent-config.js';
import { resolveAgent, type AgentAddress } from '../agent-client.js';

/** The flags every operator command takes to reach an agent. */
export const AGENT_FLAGS = {
  agent: { type: 'string' },
  'token-file': { type: 'string' },
} as const;

/** Optional on the command line: the environment or a config file may name the agent. */
export const AGENT_USAGE = '[--agent SOCKET_OR_URL] [--token-file FILE]';

/** Where --agent and --token-file come from when not given (for a command's --help). */
export const AGENT_HELP = `Without --agent: $HOTPATCH_AGENT, else "agent" in the first config file found of
./.hotpatch.json and $XDG_CONFIG_HOME/hotpatch/config.json (~/.config/hotpatch/config.json).
Without --token-file: $HOTPATCH_TOKEN_FILE, else that file's "tokenFile".`;

/** The agent to talk to: --agent > HOTPATCH_AGENT > config file (agent-config.ts). */
export async function agentOf(values: Record<string, unknown>): Promise<AgentAddress> {
  const settings = await agentSettings({ agent: optionalString(values, 'agent'), tokenFile: optionalString(values, 'token-file') });
  return resolveAgent(settings.agent, settings.tokenFile, settings.source);
}
