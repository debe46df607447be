#include "cpu.h"
#include "internal.h"

int aads_variant_available(int variant) {
    switch (variant) {
    case AADS_VARIANT_PORTABLE: return 1;
#if AADS_X86
    case AADS_VARIANT_AVX2: return aads_x86_has_avx2();
    case AADS_VARIANT_AVX512VNNI: return aads_x86_has_avx512vnni();
#endif
#if AADS_ARM64
    case AADS_VARIANT_NEON: return 1;
    case AADS_VARIANT_NEON_DOT: return aads_arm_has_dotprod();
#endif
    default: return 0;
    }
}

int aads_variant_best(void) {
    static const int order[] = {AADS_VARIANT_AVX512VNNI, AADS_VARIANT_AVX2, AADS_VARIANT_NEON_DOT, AADS_VARIANT_NEON};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (aads_variant_available(order[i])) return order[i];
    }
    return AADS_VARIANT_PORTABLE;
}

const char *aads_variant_name(int variant) {
    switch (variant) {
    case AADS_VARIANT_PORTABLE: return "portable";
    case AADS_VARIANT_AVX2: return "avx2";
    case AADS_VARIANT_AVX512VNNI: return "avx512vnni";
    case AADS_VARIANT_NEON: return "neon";
    case AADS_VARIANT_NEON_DOT: return "neon-dotprod";
    default: return "unknown";
    }
}

void aads_qconv_run(int variant, const aads_qconv *p, const int8_t *in, int8_t *out, int32_t row_begin, int32_t row_end) {
    if (!aads_variant_available(variant)) variant = AADS_VARIANT_PORTABLE;
    switch (variant) {
#if AADS_X86
    case AADS_VARIANT_AVX2: aads_qconv_avx2(p, in, out, row_begin, row_end); return;
    case AADS_VARIANT_AVX512VNNI: aads_qconv_avx512vnni(p, in, out, row_begin, row_end); return;
#endif
#if AADS_ARM64
    case AADS_VARIANT_NEON: aads_qconv_neon(p, in, out, row_begin, row_end); return;
    case AADS_VARIANT_NEON_DOT: aads_qconv_neon_dot(p, in, out, row_begin, row_end); return;
#endif
    default: aads_qconv_portable(p, in, out, row_begin, row_end); return;
    }
}

void aads_dwconv_run(int variant, const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh_begin, int32_t oh_end) {
    if (!aads_variant_available(variant)) variant = AADS_VARIANT_PORTABLE;
    switch (variant) {
#if AADS_X86
    case AADS_VARIANT_AVX2: aads_dwconv_avx2(p, in, out, oh_begin, oh_end); return;
    case AADS_VARIANT_AVX512VNNI: aads_dwconv_avx512(p, in, out, oh_begin, oh_end); return;
#endif
#if AADS_ARM64
    case AADS_VARIANT_NEON:
    case AADS_VARIANT_NEON_DOT: aads_dwconv_neon(p, in, out, oh_begin, oh_end); return;
#endif
    default: aads_dwconv_portable(p, in, out, oh_begin, oh_end); return;
    }
}
