#ifndef AADS_CKERNELS_CPU_H
#define AADS_CKERNELS_CPU_H
// The architecture the kernels are compiled for and the CPU features they select at run time. cpu.c is the one
// place that asks the CPU; kernels and dispatch call these functions and never detect anything themselves.

#if defined(__x86_64__) || defined(_M_X64)
#define AADS_X86 1
#endif
#if defined(__aarch64__)
#define AADS_ARM64 1
#endif

#if AADS_X86
/// 1 when the CPU has AVX2 and FMA.
int aads_x86_has_avx2(void);
/// 1 when the CPU has AVX-512 F, BW, DQ, VL and VNNI.
int aads_x86_has_avx512vnni(void);
#endif
#if AADS_ARM64
/// 1 when the CPU has the Armv8.2 dot-product instructions (SDOT).
int aads_arm_has_dotprod(void);
#endif
#endif
