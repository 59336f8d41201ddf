/*
 * neon-common.h — what the ARM kernel files share: includes, the dotprod target attribute and
 * horizontal sums. Included only inside `#if defined(__aarch64__) || defined(__ARM_NEON)`.
 */
#ifndef BITNETD_NEON_COMMON_H
#define BITNETD_NEON_COMMON_H

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "../kernels-internal.h"

#define TK_NEON_INLINE static inline __attribute__((always_inline))
#define TK_UNROLL _Pragma("GCC unroll 16")

#if defined(__aarch64__)
#if defined(__clang__)
#define TK_DOTPROD_ATTR target("dotprod")
#else
#define TK_DOTPROD_ATTR target("arch=armv8.2-a+dotprod")
#endif
#define TK_DOTPROD_FN __attribute__((TK_DOTPROD_ATTR))
#define TK_DOTPROD_INLINE static inline __attribute__((always_inline, TK_DOTPROD_ATTR))
#endif

TK_NEON_INLINE int32_t hsum_s32_neon(int32x4_t v) {
#if defined(__aarch64__)
    return vaddvq_s32(v);
#else
    int32x2_t s = vadd_s32(vget_low_s32(v), vget_high_s32(v));
    s = vpadd_s32(s, s);
    return vget_lane_s32(s, 0);
#endif
}

#endif /* BITNETD_NEON_COMMON_H */
