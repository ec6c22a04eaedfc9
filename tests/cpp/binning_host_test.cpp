// Host-side check of csrc/common/binning.h's index arithmetic (tests/test_binning_header.py
// compiles and runs it): for a constant input whose +-0.5 widening is lost to rounding, every
// edge equals the value and numpy's position is 0 / 0. The bin lookup must stay inside edges[0..k]
// and give the last bin (the one whose closed end holds the value). Prints one line per case:
// "<dtype> <value> <k> <bin> <lowest edge index read> <highest edge index read> <bin_has_width of bin 0>".
#include <cstdio>
#include <vector>

#include "common/binning.h"

using namespace dsampling;

template <typename T>
void run(const char* name, double value) {
  const T v = T(value);
  for (int32_t k : {1, 2, 3, 10}) {
    const binning::OuterEdges<T> outer = binning::outer_edges<T>(v, v);
    std::vector<T> edges(k + 1);
    for (int32_t j = 0; j <= k; ++j) edges[j] = binning::linspace_edge<T>(j, k, outer.first, outer.last);
    int32_t lowest = k + 1, highest = -2;
    const auto edge = [&](int32_t j) {
      lowest = j < lowest ? j : lowest;
      highest = j > highest ? j : highest;
      return edges[j >= 0 && j <= k ? j : 0];  // a read outside [0, k] is recorded, not made
    };
    const T denom = Rounded<T>::sub(edges[k], edges[0]);
    const int32_t bin = binning::bin_index<T, T>(v, edge, k, denom);
    std::printf("%s %.17g %d %d %d %d %d\n", name, value, k, bin, lowest, highest,
                static_cast<int>(binning::bin_has_width<T, T>(0, k, outer)));
  }
}

int main() {
  run<c10::BFloat16>("bfloat16", 256.0);
  run<c10::BFloat16>("bfloat16", 1024.0);
  run<c10::Half>("float16", 2048.0);
  run<float>("float32", 16777216.0);
  run<double>("float64", 9007199254740992.0);
  run<double>("float64", 1.0);  // a constant the widening survives: numpy's [0.5, 1.5]
  return 0;
}
