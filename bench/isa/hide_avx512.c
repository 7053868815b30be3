/* LD_PRELOAD library for benchmarks: makes this process (and every thread it starts) see a CPU without
 * AVX-512, so oneDNN, PyTorch's kernel dispatch and ONNX Runtime's MLAS pick their AVX2/FMA kernels.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, needs the `cpuid_fault` CPU flag) turns every
 * CPUID instruction into SIGSEGV; the handler runs the real CPUID with faulting briefly off, clears the
 * AVX-512 (and AMX, AVX-VNNI) feature bits, writes the registers back and steps over the instruction.
 * The setting is inherited by threads and forks and reset by execve, so each new program needs the
 * preload again (LD_PRELOAD in the environment does that).
 *
 * Build: gcc -O2 -shared -fPIC -o hide_avx512.so hide_avx512.c  (bench/_common.py does it on demand). */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction previous;
static volatile long emulated;

static int set_cpuid(int enabled) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void masked_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    set_cpuid(1);
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) |
                  (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, AVX512-FP16 23, AMX-TILE 24, AMX-INT8 25 */
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AMX-FP16 21 */
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21));
    } else if (leaf == 0xD && sub == 0) {
        /* XSAVE components 5-7 (opmask, ZMM_Hi256, Hi16_ZMM) and 17-18 (AMX tiles) reported absent */
        r[0] &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));
    }
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = (ucontext_t *)ctx;
    const uint8_t *ip = (const uint8_t *)uc->uc_mcontext.gregs[REG_RIP];
    if (ip && ip[0] == 0x0F && ip[1] == 0xA2) {
        uint32_t r[4];
        masked_cpuid((uint32_t)uc->uc_mcontext.gregs[REG_RAX], (uint32_t)uc->uc_mcontext.gregs[REG_RCX], r);
        uc->uc_mcontext.gregs[REG_RAX] = r[0];
        uc->uc_mcontext.gregs[REG_RBX] = r[1];
        uc->uc_mcontext.gregs[REG_RCX] = r[2];
        uc->uc_mcontext.gregs[REG_RDX] = r[3];
        uc->uc_mcontext.gregs[REG_RIP] += 2;
        __atomic_add_fetch(&emulated, 1, __ATOMIC_RELAXED);
        return;
    }
    /* a real fault: hand it on (or die the default way) */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, ctx);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL);
    }
}

long hide_avx512_cpuid_calls(void) { return emulated; }

__attribute__((constructor)) static void hide_avx512_start(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "hide_avx512: CPUID faulting is not available here (no cpuid_fault flag?): "
                        "this process sees the real CPU\n");
        if (getenv("HIDE_AVX512_STRICT")) _exit(3);
    }
}
