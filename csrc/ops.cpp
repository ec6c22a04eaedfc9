// The one list of dsampling ops. Kernels register themselves next to their code, one file per
// op and device (cpu/<op>_kernel.cpp, cuda/<op>_kernel.cu); fake kernels live in
// dsampling_ext/ops/_fakes.py, which set_python_module points the dispatcher at.
#include <Python.h>
#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda.h>
#endif

extern "C" {
// An empty module: `import dsampling_ext._C` loads this library, whose static initialisers
// register the ops. No pybind11.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace dsampling {

// CUDA_VERSION the library was compiled against, or -1 for a CPU-only build.
int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDA_VERSION;
#else
  return -1;
#endif
}

TORCH_LIBRARY(dsampling, m) {
  m.set_python_module("dsampling_ext.ops._fakes");

  // Counter-based RNG shared by every method (csrc/common/philox.h).
  m.def("philox_fill_uniform_(Tensor(a!) out, int seed, int offset) -> ()");
  m.def("_philox4x32_10(Tensor counter, int seed) -> Tensor");

  // Loss histograms with numpy.histogram semantics (csrc/common/binning.h).
  m.def("loss_histogram(Tensor values, int bins, float[]? range=None) -> (Tensor counts, Tensor edges)");

  // ADONIS / Selective-Backprop: ring-buffer loss history, clip, histogram, p, keep, in one call.
  m.def(
      "histogram_select(Tensor(a!) history, Tensor(b!) state, Tensor losses, int rule, int bin_rule, int bins, "
      "float threshold, float clip_sigma, int clip_mode, float keep_fraction, int keep_mode, float beta, "
      "bool skip_nonfinite, int seed, int offset, Tensor? keys=None) -> (Tensor keep, Tensor p)");

  // Accuracy filtering: keep misclassified samples (plus, with a margin, near-ties).
  m.def("argmax_mismatch(Tensor logits, Tensor labels, float? margin=None) -> (Tensor keep, Tensor kept_indices, Tensor count)");

  // Dynamic training (random partition resampling) and the random-subset control.
  m.def("partition_resample(Tensor(a!) perm, int size, int k, int seed, int offset) -> ()");
  m.def("random_subset_(Tensor(a!) perm, int size, int seed, int offset) -> ()");

  // Scores from the training pass and epoch-level selection from them (SPEC section 8).
  m.def(
      "table_record_(Tensor(a!) scores, Tensor(b!) correct, Tensor(c!) seen_epoch, Tensor indices, Tensor losses, "
      "int epoch, Tensor? logits=None, Tensor? targets=None) -> ()");
  m.def(
      "table_select(Tensor scores, Tensor seen_epoch, int epoch, int rule, float prune, int staleness, int bin_rule, "
      "int bins, float threshold, float beta, bool reweight, int seed, int offset) -> (Tensor indices, Tensor weights)");

  // RAS importance sampling (SPEC section 4): gradient-norm scores with per-group sums, and
  // weighted sampling with replacement past torch.multinomial's 2^24 categories.
  m.def(
      "gradnorm_scores(Tensor logits, Tensor labels, Tensor? groups, int num_groups) -> (Tensor scores, "
      "Tensor group_sum_sq, Tensor group_count)");
  m.def("weighted_sample(Tensor weights, SymInt num_samples, int seed, int offset) -> (Tensor indices, Tensor probs)");

  // IDS prototype selection: class means of embeddings and each row's squared distance to its own.
  m.def("centroid_distances(Tensor embeddings, Tensor labels, int num_classes) -> (Tensor centroids, Tensor sq_distances, Tensor counts)");

  m.def("_cuda_version", &cuda_version);
}

}  // namespace dsampling
