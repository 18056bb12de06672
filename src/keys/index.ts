export { FileKeyProvider, keyProviderOf, type KeyProvider } from './key-provider.js';
export { Pkcs11KeyProvider, type Pkcs11KeyOptions } from './pkcs11-key-provider.js';
