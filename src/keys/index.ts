export { FileKeyProvider, keyProviderOf, type KeyProvider } from './key-provider.js';
export { Pkcs11KeyProvider, type Pkcs11KeyOptions } from './pkcs11-key-provider.js';
export { RemoteKeyProvider, type RemoteKeyOptions } from './remote-key-provider.js';
