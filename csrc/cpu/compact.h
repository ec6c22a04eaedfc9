// Ordered stream compaction on the CPU, shared by the kernels that return the positions of the
// rows they keep (argmax_mismatch, table_select).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dsampling {
namespace cpu {

// Where each chunk's kept positions start in the output: two parallel passes over the flags
// (count per chunk, then write from each chunk's prefix offset).
struct CompactPlan {
  int64_t per_chunk;
  std::vector<int64_t> offset;  // chunks + 1 entries; offset.back() is the number kept
  int64_t total() const { return offset.back(); }
};

template <typename Flag>
CompactPlan compact_plan(const Flag* keep, int64_t rows) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 65536));
  CompactPlan plan{(rows + chunks - 1) / chunks, std::vector<int64_t>(chunks + 1, 0)};
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t n = 0;
      for (int64_t r = c * plan.per_chunk; r < std::min(rows, (c + 1) * plan.per_chunk); ++r) n += keep[r] != 0;
      plan.offset[c + 1] = n;
    }
  });
  for (int64_t c = 0; c < chunks; ++c) plan.offset[c + 1] += plan.offset[c];
  return plan;
}

// Writes the positions r with keep[r] != 0, in increasing order, to out[0, plan.total()), and,
// given `by_flag` (a lookup indexed by the flag's value), by_flag[keep[r]] to values[...] in the
// same pass.
template <typename Flag, typename V = float>
void compact_write(const Flag* keep, int64_t rows, const CompactPlan& plan, int64_t* out, const V* by_flag = nullptr,
                   V* values = nullptr) {
  const int64_t chunks = static_cast<int64_t>(plan.offset.size()) - 1;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t n = plan.offset[c], spare;
      V spare_value;
      const int64_t last = std::min(rows, (c + 1) * plan.per_chunk);
      for (int64_t r = c * plan.per_chunk; r < last; ++r) {
        // Branch-free: a dropped row's write is overwritten by the next kept one; past this
        // chunk's share it goes to a spare, so chunks never write each other's slots.
        const bool inside = n < plan.offset[c + 1];
        *(inside ? out + n : &spare) = r;
        if (values != nullptr) *(inside ? values + n : &spare_value) = by_flag[keep[r]];
        n += keep[r] != 0;
      }
    }
  });
}

}  // namespace cpu
}  // namespace dsampling
