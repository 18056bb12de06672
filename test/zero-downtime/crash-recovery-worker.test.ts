/*
 * The crash-recovery suite again, with the target's patch versions each in a worker thread of
 * its own (isolation 'worker'): SIGKILL of the host at every phase must leave the same state.
 */
process.env.HOTPATCH_TEST_ISOLATION = 'worker';
await import('./crash-recovery.test.js');
