/**
 * Pure statistics for canary judgement: exact count tests, rank tests, robust estimators
 * and the special functions they rest on. No I/O, no state; bad arguments throw
 * HotPatchError('INVALID').
 */
export { fisherExactGreater, binomialUpperTail, clopperPearsonUpper } from './proportions.js';
export { mannWhitneyGreater, wilcoxonSignedRankGreater } from './rank-tests.js';
export type { RankTestResult, SignedRankResult } from './rank-tests.js';
export { median, quantile, hodgesLehmannShift } from './estimators.js';
export { normalSf, logGamma } from './special.js';
export { cochranMantelHaenszelGreater, stratifiedFisherGreater, type Stratum } from './stratified-fisher.js';
