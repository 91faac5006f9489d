/*
 * cuda_prelude.h: the little of the CUDA headers that afm_kernels.cu.cl needs, for compiling it
 * with clang -x cuda -nocudainc -nocudalib (no CUDA SDK) in .ci/check-cuda.sh. Runtime builds use
 * NVRTC, which has the real definitions; this file is never embedded in the library.
 */
#ifndef AFM_CUDA_PRELUDE_H
#define AFM_CUDA_PRELUDE_H

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))

struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __afm_uint3 { unsigned int x, y, z; };
#define __AFM_SREG3(name) (__afm_uint3{(unsigned int)__nvvm_read_ptx_sreg_##name##_x(), \
    (unsigned int)__nvvm_read_ptx_sreg_##name##_y(), (unsigned int)__nvvm_read_ptx_sreg_##name##_z()})
#define threadIdx __AFM_SREG3(tid)
#define blockIdx __AFM_SREG3(ctaid)
#define blockDim __AFM_SREG3(ntid)
#define gridDim __AFM_SREG3(nctaid)

extern "C" __device__ float __nv_expf(float);
extern "C" __device__ float __nv_logf(float);

/* __syncthreads is a clang builtin for NVPTX (bar.sync 0). */
static __device__ __forceinline__ float expf(float x) { return __nv_expf(x); }
static __device__ __forceinline__ float logf(float x) { return __nv_logf(x); }
static __device__ __forceinline__ float sqrtf(float x) { return __builtin_sqrtf(x); }
static __device__ __forceinline__ float fmaxf(float a, float b) { return __builtin_fmaxf(a, b); }
static __device__ __forceinline__ float fabsf(float x) { return __builtin_fabsf(x); }

#endif /* AFM_CUDA_PRELUDE_H */
