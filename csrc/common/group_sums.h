// The order in which per-group sums add their rows, shared by centroid_distances (class sums of
// the embeddings) and gradnorm_scores (group sums of score^2), the same on both devices so that
// CPU and CUDA agree to the bit:
//   the rows of each group, in increasing row order, are cut into chunks of kChunkRows rows; a
//   chunk's sum adds its rows in order, starting from 0; the group's sum adds its chunks' sums
//   in chunk order, starting from 0 (0 for an empty group).
// Why chunks: a GPU adds every chunk at once, then every group, so a batch whose rows all share
// one group takes kChunkRows + rows / kChunkRows serial adds instead of rows.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace dsampling {
namespace group_sums {

constexpr int64_t kChunkRows = 256;

// Chunks of a group with `rows` rows.
DS_INLINE int64_t chunks_of(int64_t rows) { return (rows + kChunkRows - 1) / kChunkRows; }

// An upper bound of the chunks of all groups, known before the counts: at most one partial
// chunk per non-empty group.
DS_INLINE int64_t max_chunks(int64_t n, int64_t groups) {
  return n / kChunkRows + (groups < n ? groups : n);
}

}  // namespace group_sums
}  // namespace dsampling
