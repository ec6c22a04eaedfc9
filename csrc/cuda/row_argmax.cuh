// Rows handed to groups of lanes (CUDA only), shared by argmax_mismatch and table_record_: a row
// gets G = argmax::group_width(C) lanes of a warp (32 / G rows per warp, so a warp reads
// contiguous logits); lane t scans the columns t, t + G, ... and the lane states merge by shuffles
// into the row's argmax, which does not depend on the order (first index, NaN wins): the CPU's to
// the bit. Values are compared in argmax::Compare<T> (float32 for 16-bit logits).
#pragma once

#include "common/argmax.h"
#include "cuda/launch.cuh"

namespace dsampling {
namespace cuda {

// The lane's row and whether it exists, for a warp-uniform loop over rows in steps of
// rows_per_warp(group) * warps: every lane of a warp takes part in the shuffles, a group past the
// last row idles.
struct RowGroups {
  int group, lane;
  int64_t first, step;
  __device__ explicit RowGroups(int g) : group(g), lane(static_cast<int>(threadIdx.x) % g) {
    const int64_t rows_per_warp = kWarp / g;
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
    const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
    first = warp * rows_per_warp;
    step = warps * rows_per_warp;
  }
  __device__ int64_t row(int64_t base) const { return base + (threadIdx.x % kWarp) / group; }
};

// The argmax state of a row of `classes` values (row == nullptr: an idle lane), on every lane of
// its group.
template <typename T>
__device__ argmax::RowState<typename argmax::Compare<T>::type> group_row_state(const T* row, int64_t classes,
                                                                                const RowGroups& g) {
  using V = typename argmax::Compare<T>::type;
  argmax::RowState<V> s = argmax::empty<V>();
  if (row != nullptr) {
    for (int64_t j = g.lane; j < classes; j += g.group) argmax::update(s, static_cast<V>(row[j]), j);
  }
  for (int o = g.group / 2; o > 0; o >>= 1) {
    const argmax::RowState<V> other{__shfl_xor_sync(kFullMask, s.best, o, g.group),
                                    __shfl_xor_sync(kFullMask, s.second, o, g.group),
                                    __shfl_xor_sync(kFullMask, s.best_index, o, g.group)};
    s = argmax::merge(s, other);
  }
  return s;
}

}  // namespace cuda
}  // namespace dsampling
