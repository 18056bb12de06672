import { optionalString, requireString } from '../args.js';
import { resolveAgent, type AgentAddress } from '../agent-client.js';

/** The flags every operator command takes to reach an agent. */
export const AGENT_FLAGS = {
  agent: { type: 'string' },
  'token-file': { type: 'string' },
} as const;

export const AGENT_USAGE = '--agent SOCKET_OR_URL [--token-file FILE]';

export function agentOf(values: Record<string, unknown>): Promise<AgentAddress> {
  return resolveAgent(requireString(values, 'agent'), optionalString(values, 'token-file'));
}
