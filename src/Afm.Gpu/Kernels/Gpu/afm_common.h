/*
 * afm_common.h: the few words that differ between OpenCL C (1.2) and CUDA C, so that
 * afm_kernels.cu.cl compiles as either. Only dimension 0 of the thread / group ids is used.
 *
 *   KERNEL        kernel entry (CUDA: extern "C" __global__, unmangled, with launch bounds AFM_WG)
 *   DEVICE_FN     helper function
 *   GLOBAL        address space of a global-memory pointer parameter
 *   LOCAL         declaration of a work-group (shared) array in a kernel body
 *   LPTR          address space of a pointer parameter to such an array
 *   RESTRICT      no-alias pointer qualifier
 *   BARRIER       work-group barrier with a local-memory fence (and a global one under AFM_ACC_GLOBAL)
 *   LID / GID / LSIZE / GROUP_ID / NUM_GROUPS (0)
 *   EXP, LOG, SQRT, FMAX, FABS    single-precision math
 *   offs_t        64-bit signed integer for large buffer offsets
 *   float4        four floats (.x .y .z .w): OpenCL's vector type, CUDA's struct
 *   LOAD4(p, i)   the float4 p[i .. i + 3] from global or local memory; under CUDA p + i must be
 *                 16-byte aligned (a float array declared ALIGN16, or a device allocation, at an
 *                 index that is a multiple of 4)
 *   ALIGN16       after a local array's declarator: align it for LOAD4
 */
#ifndef AFM_COMMON_H
#define AFM_COMMON_H

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)

#define KERNEL __kernel void
#define DEVICE_FN static inline
#define GLOBAL __global
#define LOCAL __local
#define LPTR __local
#define RESTRICT restrict
#if defined(AFM_ACC_GLOBAL) && AFM_ACC_GLOBAL
/* the dense-gradient accumulator lives in global memory: barriers must order it too */
#define BARRIER barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)
#else
#define BARRIER barrier(CLK_LOCAL_MEM_FENCE)
#endif
#define LID(d) ((int)get_local_id(d))
#define GID(d) ((int)get_global_id(d))
#define LSIZE(d) ((int)get_local_size(d))
#define GROUP_ID(d) ((int)get_group_id(d))
#define NUM_GROUPS(d) ((int)get_num_groups(d))
#define EXP(x) exp(x)
#define LOG(x) log(x)
#define SQRT(x) sqrt(x)
#define FMAX(a, b) fmax(a, b)
#define FABS(x) fabs(x)
typedef long offs_t;
#define LOAD4(p, i) vload4(0, (p) + (i))
#define ALIGN16 __attribute__((aligned(16)))

#elif defined(__CUDACC__) || defined(__CUDA_ARCH__) || defined(__CUDACC_RTC__)

#define KERNEL extern "C" __global__ void __launch_bounds__(AFM_WG)
#define DEVICE_FN static __device__ __forceinline__
#define GLOBAL
#define LOCAL __shared__
#define LPTR
#define RESTRICT __restrict__
#define BARRIER __syncthreads()
#define AFM_DIM_(v, d) ((int)((d) == 0 ? v.x : (d) == 1 ? v.y : v.z))
#define LID(d) AFM_DIM_(threadIdx, d)
#define LSIZE(d) AFM_DIM_(blockDim, d)
#define GROUP_ID(d) AFM_DIM_(blockIdx, d)
#define NUM_GROUPS(d) AFM_DIM_(gridDim, d)
#define GID(d) (GROUP_ID(d) * LSIZE(d) + LID(d))
#define EXP(x) expf(x)
#define LOG(x) logf(x)
#define SQRT(x) sqrtf(x)
#define FMAX(a, b) fmaxf(a, b)
#define FABS(x) fabsf(x)
typedef unsigned int uint;
typedef long long offs_t;
#define LOAD4(p, i) (*(const float4*)((p) + (i)))
#define ALIGN16 __attribute__((aligned(16)))

#else
#error "afm_common.h: compile as OpenCL C or CUDA C"
#endif

#endif /* AFM_COMMON_H */
