// cuda_fp16.h for cuda-emu: __half over GCC's _Float16 (x86-64, GCC >= 12), with the intrinsics
// CUDA's header declares that dfdx's kernels use, and a few neighbours.
//
// A native type rather than CUDA's class: it converts to and from float and double implicitly
// and has built-in arithmetic, so everything CUDA's __half accepts compiles (some mixed-type
// expressions CUDA rejects as ambiguous compile here too).
#ifndef CUDA_EMU_FP16_H
#define CUDA_EMU_FP16_H

#include "cuda_emu.h"

typedef _Float16 __half;
typedef _Float16 half;
struct __half2 {
    __half x, y;
};
typedef __half2 half2;

#ifndef __CUDA_EMU_SCAN__

static inline __half __float2half(float a) { return (__half)a; }
static inline __half __float2half_rn(float a) { return (__half)a; }
static inline __half __double2half(double a) { return (__half)a; }
static inline float __half2float(__half a) { return (float)a; }
static inline __half __int2half_rn(int a) { return (__half)a; }
static inline __half __uint2half_rn(unsigned int a) { return (__half)a; }
static inline int __half2int_rz(__half a) { return (int)a; }
static inline int __half2int_rn(__half a) { return (int)nearbyintf((float)a); }
static inline __half2 __floats2half2_rn(float a, float b) { return __half2{(__half)a, (__half)b}; }
static inline __half2 __float2half2_rn(float a) { return __half2{(__half)a, (__half)a}; }
static inline float __low2float(__half2 a) { return (float)a.x; }
static inline float __high2float(__half2 a) { return (float)a.y; }

static inline unsigned short __half_as_ushort(__half a) {
    unsigned short u;
    memcpy(&u, &a, 2);
    return u;
}
static inline short __half_as_short(__half a) {
    short u;
    memcpy(&u, &a, 2);
    return u;
}
static inline __half __ushort_as_half(unsigned short u) {
    __half a;
    memcpy(&a, &u, 2);
    return a;
}
static inline __half __short_as_half(short u) {
    __half a;
    memcpy(&a, &u, 2);
    return a;
}

static inline bool __hisnan(__half a) { return a != a; }
static inline int __hisinf(__half a) {
    return a == (__half)INFINITY ? 1 : (a == -(__half)INFINITY ? -1 : 0);
}
static inline __half __hadd(__half a, __half b) { return a + b; }
static inline __half __hsub(__half a, __half b) { return a - b; }
static inline __half __hmul(__half a, __half b) { return a * b; }
static inline __half __hdiv(__half a, __half b) { return a / b; }
static inline __half __hfma(__half a, __half b, __half c) { return (__half)fmaf(a, b, c); }
static inline __half __hneg(__half a) { return -a; }
static inline __half __habs(__half a) { return __ushort_as_half(__half_as_ushort(a) & 0x7fff); }
static inline bool __heq(__half a, __half b) { return a == b; }
static inline bool __hne(__half a, __half b) { return a != b; }
static inline bool __hlt(__half a, __half b) { return a < b; }
static inline bool __hle(__half a, __half b) { return a <= b; }
static inline bool __hgt(__half a, __half b) { return a > b; }
static inline bool __hge(__half a, __half b) { return a >= b; }
// __hmax/__hmin: the other operand when one is NaN (fmax); the _nan forms propagate NaN.
static inline __half __hmax(__half a, __half b) { return (__half)fmaxf(a, b); }
static inline __half __hmin(__half a, __half b) { return (__half)fminf(a, b); }
static inline __half __hmax_nan(__half a, __half b) {
    return __hisnan(a) ? a : (__hisnan(b) ? b : __hmax(a, b));
}
static inline __half __hmin_nan(__half a, __half b) {
    return __hisnan(a) ? a : (__hisnan(b) ? b : __hmin(a, b));
}

static inline __half hexp(__half a) { return (__half)expf(a); }
static inline __half hexp2(__half a) { return (__half)exp2f(a); }
static inline __half hexp10(__half a) { return (__half)powf(10.0f, a); }
static inline __half hlog(__half a) { return (__half)logf(a); }
static inline __half hlog2(__half a) { return (__half)log2f(a); }
static inline __half hlog10(__half a) { return (__half)log10f(a); }
static inline __half hsqrt(__half a) { return (__half)sqrtf(a); }
static inline __half hrsqrt(__half a) { return (__half)(1.0f / sqrtf(a)); }
static inline __half hrcp(__half a) { return (__half)(1.0f / (float)a); }
static inline __half hsin(__half a) { return (__half)sinf(a); }
static inline __half hcos(__half a) { return (__half)cosf(a); }
static inline __half hfloor(__half a) { return (__half)floorf(a); }
static inline __half hceil(__half a) { return (__half)ceilf(a); }
static inline __half htrunc(__half a) { return (__half)truncf(a); }
static inline __half hrint(__half a) { return (__half)rintf(a); }

static inline __half atomicAdd(__half *p, __half v) {
    return cuda_emu::atomic_float<__half, unsigned short>(p, [v](__half x) { return (__half)(x + v); });
}
static inline __half atomicMax(__half *p, __half v) {
    return cuda_emu::atomic_float<__half, unsigned short>(p, [v](__half x) { return __hmax(x, v); });
}
static inline __half atomicMin(__half *p, __half v) {
    return cuda_emu::atomic_float<__half, unsigned short>(p, [v](__half x) { return __hmin(x, v); });
}

#endif // __CUDA_EMU_SCAN__
#endif // CUDA_EMU_FP16_H
