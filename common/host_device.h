// Marks small functions that host code and device code (cuda/, hip/) both compile.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define VD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VD_HOST_DEVICE inline
#endif
