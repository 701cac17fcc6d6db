"""x86 targets that tests compile for in a subprocess (Numba reads ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` when it starts; compiling needs no such CPU, running does), and whether
this host can run AVX2 code."""

#: an AVX2 + FMA target without AVX-512 (16 vector registers), e.g. AMD Zen 3
AVX2 = ("+64bit,+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+sse,+sse2,+sse3,+ssse3,"
        "+sse4.1,+sse4.2,+cx16,+movbe,-avx512f,-avx512bw,-avx512dq,-avx512vl,-avx512cd")
AVX512 = AVX2.replace("-avx512", "+avx512")
#: the environment of a process compiling AVX2 code
AVX2_ENV = {"NUMBA_CPU_NAME": "znver3", "NUMBA_CPU_FEATURES": AVX2}


def host_runs_avx2() -> bool:
    """Whether this CPU has AVX2 and FMA (so the AVX2 code compiled for tests runs here)."""
    import llvmlite.binding as ll
    features = ll.get_host_cpu_features().flatten().split(",")
    return "+avx2" in features and "+fma" in features
