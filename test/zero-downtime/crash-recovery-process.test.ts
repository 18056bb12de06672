/*
 * The crash-recovery suite again, with the target's patch versions each in a child process of
 * its own (isolation 'process'): SIGKILL of the host at every phase must leave the same state.
 */
process.env.HOTPATCH_TEST_ISOLATION = 'process';
await import('./crash-recovery.test.js');
