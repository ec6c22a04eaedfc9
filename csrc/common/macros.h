// Portable qualifiers for the scalar math shared by the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DS_HOST_DEVICE __host__ __device__
#define DS_DEVICE_CODE 1
#else
#define DS_HOST_DEVICE
#endif

#define DS_INLINE DS_HOST_DEVICE inline
