import { logHypergeometricPmf } from './densities.js';
import { normalSf } from './special.js';
import { requireSuccesses } from './validate.js';

/** One 2×2 table: k1 events in n1 trials of the first group, k2 in n2 of the second. */
export interface Stratum {
  k1: number;
  n1: number;
  k2: number;
  n2: number;
}

/** Terms below this share of a stratum's largest are dropped (far below any level tested). */
const NEGLIGIBLE = 1e-18;
/**
 * Past this many events in the strata the exact convolution (quadratic in the strata's
 * widths) gives way to the Cochran–Mantel–Haenszel normal approximation, which is accurate
 * there and costs one pass: a look must never stall the service it judges.
 */
const EXACT_MAX_EVENTS = 20_000;

/** A distribution over consecutive integers from `offset`. */
interface Discrete {
  offset: number;
  mass: Float64Array;
}

/** The conditional null distribution of one stratum's first-group count (hypergeometric), trimmed to where it has mass. */
function stratumDistribution(s: Stratum): Discrete {
  const events = s.k1 + s.k2;
  const lo = Math.max(0, events - s.n2);
  const hi = Math.min(events, s.n1);
  const total = s.n1 + s.n2;
  const mode = Math.min(hi, Math.max(lo, Math.floor(((events + 1) * (s.n1 + 1)) / (total + 2))));
  const peak = logHypergeometricPmf(mode, s.n1, s.n2, events);
  let from = mode;
  while (from > lo && logHypergeometricPmf(from - 1, s.n1, s.n2, events) - peak > Math.log(NEGLIGIBLE)) from -= 1;
  let to = mode;
  while (to < hi && logHypergeometricPmf(to + 1, s.n1, s.n2, events) - peak > Math.log(NEGLIGIBLE)) to += 1;
  const mass = new Float64Array(to - from + 1);
  for (let x = from; x <= to; x++) mass[x - from] = Math.exp(logHypergeometricPmf(x, s.n1, s.n2, events));
  return { offset: from, mass };
}

function convolve(a: Discrete, b: Discrete): Discrete {
  const mass = new Float64Array(a.mass.length + b.mass.length - 1);
  for (let i = 0; i < a.mass.length; i++) {
    const ai = a.mass[i]!;
    if (ai === 0) continue;
    for (let j = 0; j < b.mass.length; j++) mass[i + j]! += ai * b.mass[j]!;
  }
  return { offset: a.offset + b.offset, mass };
}

/**
 * Exact one-sided test across strata (H1: the first group's rate is greater within strata):
 * conditional on each table's margins, the first group's total count is a sum of independent
 * hypergeometrics; its upper tail at the observed total is the p-value (the exact
 * stratified analogue of Fisher's test, as the Cochran–Mantel–Haenszel test is the
 * asymptotic one). Strata with no events carry no information and are skipped.
 */
export function stratifiedFisherGreater(strata: readonly Stratum[]): number {
  let events = 0;
  for (const [i, s] of strata.entries()) {
    requireSuccesses('stratifiedFisherGreater', `strata[${i}].k1`, s.k1, 'n1', s.n1);
    requireSuccesses('stratifiedFisherGreater', `strata[${i}].k2`, s.k2, 'n2', s.n2);
    events += s.k1 + s.k2;
  }
  if (events > EXACT_MAX_EVENTS) return cochranMantelHaenszelGreater(strata);
  let observed = 0;
  let dist: Discrete = { offset: 0, mass: Float64Array.of(1) };
  for (const s of strata) {
    if (s.k1 + s.k2 === 0) continue;
    observed += s.k1;
    dist = convolve(dist, stratumDistribution(s));
  }
  let tail = 0;
  let all = 0;
  for (let i = 0; i < dist.mass.length; i++) {
    all += dist.mass[i]!;
    if (dist.offset + i >= observed) tail += dist.mass[i]!;
  }
  // Normalised by the kept mass, so the trimming cannot push the p-value above 1.
  return all === 0 ? 1 : Math.min(1, tail / all);
}

/**
 * One-sided Cochran–Mantel–Haenszel test (with continuity correction): the first group's
 * total count against its conditional mean, over the sum of the hypergeometric variances.
 */
export function cochranMantelHaenszelGreater(strata: readonly Stratum[]): number {
  let excess = 0;
  let variance = 0;
  for (const s of strata) {
    const events = s.k1 + s.k2;
    const total = s.n1 + s.n2;
    if (events === 0 || total < 2) continue;
    excess += s.k1 - (s.n1 * events) / total;
    variance += (s.n1 * s.n2 * events * (total - events)) / (total * total * (total - 1));
  }
  if (variance === 0) return excess > 0 ? 0 : 1;
  return normalSf((excess - 0.5) / Math.sqrt(variance));
}
