export {
  DEFAULT_CHUNK_SIZE,
  checkWritableTarget,
  concatBytes,
  copyFileAtomic,
  digestingStream,
  fileError,
  fsyncDirectory,
  openRegularFile,
  throwIfAborted,
  withCleanupFailure,
  readFileBounded,
  readFileChunks,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileExclusive,
} from './atomic-file.js';
export type {
  AtomicWriteData,
  CopyFileAtomicOptions,
  DigestingStream,
  FileDigest,
  ReadFileOptions,
  WriteFileAtomicOptions,
} from './atomic-file.js';
export { DEFAULT_MAX_MANIFEST_BYTES, FileSystemRepository } from './filesystem-repository.js';
export type {
  FileSystemRepositoryOptions,
  PayloadSource,
  WritePayloadOptions,
} from './filesystem-repository.js';
export { DEFAULT_PATCH_LIFETIME_MS, packPatch } from './pack-patch.js';
export type { PackPatchOptions, PackedPatch } from './pack-patch.js';
