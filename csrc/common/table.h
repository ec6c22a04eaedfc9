// Per-element math of the score-table ops (table_select, table_record_), shared by the CPU and
// CUDA kernels (SPEC section 8).
//
// table_select decides, for every dataset index i, whether the epoch trains it:
//   * forced: never scored (seen_epoch < 0), or not trained for more than `staleness` epochs
//     (epoch - seen_epoch > staleness), or, for the mismatch rule, of unknown correctness:
//     always kept, weight 1, so every score is refreshed by training on it;
//   * otherwise the rule says whether i is a candidate and its keep probability q; a candidate
//     is kept iff u_i < q, u_i = philox_uniform(N, seed, offset)[i] (stream position i).
// Sums over the table use one fixed order on both devices (tiles of kTile values, each summed
// in the lane/tree order of common/selection.h, then the tile sums in that order again), so the
// mean, and with it every decision, agrees to the bit.
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "common/philox.h"

namespace dsampling {
namespace table {

enum Rule : int64_t { kMean = 0, kPmf = 1, kPercentile = 2, kMismatch = 3 };

// What the decision pass writes per index: dropped, kept as a non-candidate (weight 1), or kept
// as a candidate (weight 1 / q when reweighting).
enum Code : uint8_t { kDropped = 0, kKept = 1, kKeptCandidate = 2 };

constexpr int64_t kTile = 4096;  // values per tile of the ordered sum (16 rows of 256 lanes)

DS_INLINE bool forced(int32_t seen_epoch, int64_t epoch, int64_t staleness) {
  return (seen_epoch < 0) | (epoch - seen_epoch > staleness);  // no branch: the CPU loop vectorises
}

// The rule's verdict on one scored index.
struct Chance {
  bool candidate;
  double q;  // keep probability of a candidate
};

// kKept for forced indices and non-candidates, else kKeptCandidate iff u < q, else kDropped;
// branch-free (the draw is unpredictable).
DS_INLINE uint8_t keep_code(bool is_forced, Chance chance, float u) {
  const int live = static_cast<int>(chance.candidate) & static_cast<int>(!is_forced);
  const int taken = static_cast<int>(static_cast<double>(u) < chance.q);
  return static_cast<uint8_t>(1 + live * (2 * taken - 1));
}

// Uniform of index i: word i % 4 of Philox block i / 4, as ops.philox_uniform.
DS_INLINE float uniform(int64_t seed, int64_t offset, int64_t i) {
  return philox::to_uniform(philox::stream_block(seed, offset, static_cast<uint64_t>(i) >> 2).v[i & 3]);
}

}  // namespace table
}  // namespace dsampling
