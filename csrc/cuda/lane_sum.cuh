// The lane/tree summation order of common/selection.h on a block of kLanes threads (CUDA only):
// thread t holds lane t's partial sum; the block adds lane t + s into lane t for s = kLanes/2,
// ..., 1, exactly as selection::lane_tree_sum does on the CPU, so both devices round alike.
#pragma once

#include "common/rounding.h"
#include "common/selection.h"

namespace dsampling {
namespace cuda {

// Every thread gets the block's sum; `partial` is kLanes doubles of shared memory.
__device__ inline double lane_tree_sum(double mine, double* partial) {
  partial[threadIdx.x] = mine;
  __syncthreads();
  for (int s = selection::kLanes / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] = add_rn(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace dsampling
