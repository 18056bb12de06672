export {
  checkWritableTarget,
  copyFileAtomic,
  digestingStream,
  fsyncDirectory,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileExclusive,
} from './atomic-file.js';
export type { AtomicWriteData, CopyFileAtomicOptions, DigestingStream, FileDigest, WriteFileAtomicOptions } from './atomic-file.js';
export { concatBytes, openRegularFile, readFileBounded, readFileChunks } from './bounded-read.js';
export type { ReadFileOptions } from './bounded-read.js';
export { DEFAULT_CHUNK_SIZE, fileError, raceAbort, throwIfAborted, withCleanupFailure } from './file-checks.js';
export { DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_REPOSITORY_CHUNK_SIZE, FileSystemRepository, INDEX_NAME, MAX_INDEX_BYTES } from './filesystem-repository.js';
export type { FileSystemRepositoryOptions, PayloadSource, WritePayloadOptions } from './filesystem-repository.js';
export { DEFAULT_PATCH_LIFETIME_MS, packPatch } from './pack-patch.js';
export { HttpRepository, type HttpRepositoryOptions } from './http-repository.js';
export { safeUrl, type HttpFetchOptions } from './http-fetch.js';
export { openRepository, type RepositoryLocation, type TufLocation } from './open-repository.js';
export { RepositoryMirrors, allFailed, type Mirror, type MirrorFailure } from './repository-mirrors.js';
export type { PackPatchOptions, PackedPatch } from './pack-patch.js';
export { readAhead } from './read-ahead.js';
export { TufRepository, type TufRepositoryOptions } from './tuf-repository.js';
