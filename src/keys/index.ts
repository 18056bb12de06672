export { FileKeyProvider, keyProviderOf, type KeyProvider } from './key-provider.js';
export { Pkcs11KeyProvider, type Pkcs11KeyOptions } from './pkcs11-key-provider.js';
export { Pkcs11RecipientKey } from './pkcs11-recipient-key.js';
export { readPinFile } from './pin-file.js';
export { readSecretFile } from './secret-file.js';
export { RemoteKeyProvider, type RemoteKeyOptions } from './remote-key-provider.js';
export { RemoteUnwrapProvider, type RemoteUnwrapOptions } from './remote-unwrap-provider.js';
export { unwrapProviderOf, type UnwrapKeyProvider } from '../crypto-agile/index.js';
