// centroid_distances on the CPU (IDS, seed 003): a stable counting sort of the rows by label, one
// pass over the embeddings for the chunk sums of each class (common/group_sums.h), the class
// means from them, and a second pass for each row's squared distance to its class mean.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/group_sums.h"
#include "common/prototypes.h"
#include "common/rounding.h"

namespace dsampling {
namespace {

using group_sums::kChunkRows;
using prototypes::kDistanceLanes;

constexpr int64_t kRowGrain = 1 << 12;

// The rows in class order, stable (increasing row index within a class): per-block label counts,
// their prefix in (class, block) order, then each block writes its rows. The result does not
// depend on the blocks (a stable sort is unique). Also checks the labels and fills counts.
template <typename L>
std::vector<int64_t> class_order(const L* labels, int64_t n, int64_t classes, int64_t* counts,
                                 std::vector<int64_t>* class_start) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / (1 << 16)));
  const int64_t per_block = (n + blocks - 1) / blocks;
  std::vector<int64_t> position(blocks * classes, 0);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t lo = b * per_block, hi = std::min(n, lo + per_block);
      int bad = 0;  // one branch-free scan; the error names the first bad label
      for (int64_t i = lo; i < hi; ++i) bad |= static_cast<int>(labels[i] < 0) | static_cast<int>(labels[i] >= classes);
      for (int64_t i = lo; bad && i < hi; ++i) {
        TORCH_CHECK(labels[i] >= 0 && labels[i] < classes, "centroid_distances: labels must be in [0, ", classes,
                    "), got ", static_cast<int64_t>(labels[i]), " at index ", i);
      }
      int64_t* count = position.data() + b * classes;
      for (int64_t i = lo; i < hi; ++i) ++count[labels[i]];
    }
  });
  class_start->assign(classes + 1, 0);
  int64_t running = 0;
  for (int64_t c = 0; c < classes; ++c) {
    (*class_start)[c] = running;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t m = position[b * classes + c];
      position[b * classes + c] = running;
      running += m;
    }
    counts[c] = running - (*class_start)[c];
  }
  (*class_start)[classes] = running;
  std::vector<int64_t> order(n);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      int64_t* next = position.data() + b * classes;
      for (int64_t i = b * per_block; i < std::min(n, (b + 1) * per_block); ++i) order[next[labels[i]]++] = i;
    }
  });
  return order;
}

// Chunk q's sum: its rows in order, per dimension, from 0. Returns false if a value is not finite.
template <typename T, typename A>
bool chunk_sum(const T* x, int64_t d, const int64_t* rows, int64_t m, A* out) {
  std::fill(out, out + d, A(0));
  int bad = 0;
  for (int64_t r = 0; r < m; ++r) {
    const T* row = x + rows[r] * d;
    for (int64_t j = 0; j < d; ++j) {
      const A v = static_cast<A>(row[j]);
      bad |= static_cast<int>(!(v - v == A(0)));  // x - x is 0 only for finite x
      out[j] = add_rn(out[j], v);
    }
  }
  return bad == 0;
}

// Squared distance of one row to its centroid in the lane/tree order of common/prototypes.h.
template <typename T, typename A>
A row_distance(const T* row, const A* centroid, int64_t d) {
  A lane[kDistanceLanes];
  for (int t = 0; t < kDistanceLanes; ++t) lane[t] = A(0);
  int64_t base = 0;
  for (; base + kDistanceLanes <= d; base += kDistanceLanes) {  // whole rows of lanes: a fixed trip count
    for (int t = 0; t < kDistanceLanes; ++t) {
      lane[t] = add_rn(lane[t], prototypes::squared_difference(static_cast<A>(row[base + t]), centroid[base + t]));
    }
  }
  for (int t = 0; base + t < d; ++t) {
    lane[t] = add_rn(lane[t], prototypes::squared_difference(static_cast<A>(row[base + t]), centroid[base + t]));
  }
  for (int s = kDistanceLanes / 2; s > 0; s >>= 1) {
    for (int t = 0; t < s; ++t) lane[t] = add_rn(lane[t], lane[t + s]);
  }
  return lane[0];
}

template <typename T, typename L>
void centroid_distances_impl(const T* x, const L* labels, int64_t n, int64_t d, int64_t classes,
                             typename Wider<T>::type* centroids, typename Wider<T>::type* distances,
                             int64_t* counts) {
  using A = typename Wider<T>::type;
  std::vector<int64_t> class_start;
  const std::vector<int64_t> order = class_order(labels, n, classes, counts, &class_start);

  // Chunk sums (pass 1 over the embeddings).
  std::vector<int64_t> chunk_start(classes + 1, 0);
  for (int64_t c = 0; c < classes; ++c) chunk_start[c + 1] = chunk_start[c] + group_sums::chunks_of(counts[c]);
  const int64_t chunks = chunk_start[classes];
  std::vector<A> partial(chunks * d);
  at::parallel_for(0, chunks, std::max<int64_t>(1, kRowGrain / (kChunkRows * d)), [&](int64_t begin, int64_t end) {
    int64_t c = std::upper_bound(chunk_start.begin(), chunk_start.end(), begin) - chunk_start.begin() - 1;
    for (int64_t q = begin; q < end; ++q) {
      while (chunk_start[c + 1] <= q) ++c;
      const int64_t first = class_start[c] + (q - chunk_start[c]) * kChunkRows;
      const int64_t m = std::min(kChunkRows, class_start[c + 1] - first);
      if (!chunk_sum(x, d, order.data() + first, m, partial.data() + q * d)) {
        for (int64_t r = 0; r < m; ++r) {  // name the first non-finite value of the chunk
          const int64_t i = order[first + r];
          for (int64_t j = 0; j < d; ++j) {
            const double v = static_cast<double>(x[i * d + j]);
            TORCH_CHECK(std::isfinite(v), "centroid_distances: embeddings must be finite, got ", v, " at [", i, ", ",
                        j, "]");
          }
        }
      }
    }
  });

  // Class means: each class adds its chunk sums in chunk order.
  at::parallel_for(0, classes, std::max<int64_t>(1, kRowGrain / d), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      A* out = centroids + c * d;
      std::fill(out, out + d, A(0));
      for (int64_t q = chunk_start[c]; q < chunk_start[c + 1]; ++q) {
        const A* p = partial.data() + q * d;
        for (int64_t j = 0; j < d; ++j) out[j] = add_rn(out[j], p[j]);
      }
      for (int64_t j = 0; j < d; ++j) out[j] = prototypes::class_mean(out[j], counts[c]);
    }
  });

  // Squared distances (pass 2), rows in their own order.
  at::parallel_for(0, n, std::max<int64_t>(1, kRowGrain * 16 / d), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) distances[i] = row_distance(x + i * d, centroids + labels[i] * d, d);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> centroid_distances_cpu(const at::Tensor& embeddings,
                                                                      const at::Tensor& labels, int64_t num_classes) {
  checks::centroid_distances(embeddings, labels, num_classes);
  TORCH_CHECK(embeddings.is_cpu(), "centroid_distances: embeddings must be a CPU tensor, got ", embeddings.device());
  const at::Tensor x = embeddings.contiguous();
  const at::Tensor y = labels.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor centroids = at::empty({num_classes, d}, x.options().dtype(acc));
  at::Tensor distances = at::empty({n}, x.options().dtype(acc));
  at::Tensor counts = at::zeros({num_classes}, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "centroid_distances_cpu", [&] {
    using A = typename Wider<scalar_t>::type;
    AT_DISPATCH_INDEX_TYPES(y.scalar_type(), "centroid_distances_cpu_labels", [&] {
      centroid_distances_impl<scalar_t, index_t>(x.const_data_ptr<scalar_t>(), y.const_data_ptr<index_t>(), n, d,
                                                 num_classes, centroids.mutable_data_ptr<A>(),
                                                 distances.mutable_data_ptr<A>(), counts.mutable_data_ptr<int64_t>());
    });
  });
  return {centroids, distances, counts};
}

}  // namespace

TORCH_LIBRARY_IMPL(dsampling, CPU, m) {
  m.impl("centroid_distances", &centroid_distances_cpu);
}

}  // namespace dsampling
