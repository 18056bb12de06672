import { HotPatchError, describe } from '../core/index.js';

/** One endpoint option of an etcd store: `http(s)://host:port` and nothing else, normalized. */
export function checkEndpoint(value: unknown, index: number): string {
  if (typeof value !== 'string') throw new HotPatchError('INVALID', `endpoints[${index}] must be a string, got ${describe(value)}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be a URL like http://127.0.0.1:2379, got ${describe(value)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '' || url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be http(s)://host:port, got ${describe(value)}`);
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be http(s)://host:port with nothing else, got ${describe(value)}`);
  }
  return `${url.protocol}//${url.host}`;
}
